import pytest

from storage import Demonstration, InvalidInput, NotFound


def test_demonstration_is_stored_and_the_original_answer_kept(store, ask):
    _, (answer_id,) = ask(answers=["5"])
    demo_id = store.record_demonstration(response_id=answer_id, user="alice", content="2+2 is 4.")
    assert store.demonstrations() == [
        Demonstration(
            id=demo_id,
            response_id=answer_id,
            user="alice",
            content="2+2 is 4.",
            created_at="2025-01-01T00:00:04.000+00:00",
        )
    ]
    assert store.message(answer_id).content == "5"


@pytest.mark.parametrize(
    "content, message",
    [
        (" \n", "A demonstration cannot be empty."),
        ("x" * 100_001, "A demonstration can be at most 100,000 characters; got 100,001."),
    ],
)
def test_bad_demonstrations_are_refused(store, ask, dump, content, message):
    _, (answer_id,) = ask()
    before = dump()
    with pytest.raises(InvalidInput) as error:
        store.record_demonstration(response_id=answer_id, user="alice", content=content)
    assert str(error.value) == message
    assert dump() == before


def test_another_users_answer_cannot_be_replaced(store, ask):
    _, (answer_id,) = ask()
    with pytest.raises(NotFound, match=f"^Response {answer_id} does not exist.$"):
        store.record_demonstration(response_id=answer_id, user="mallory", content="mine")
