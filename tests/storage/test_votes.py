import pytest

from storage import InvalidInput, NotFound, Vote


def test_latest_vote_counts_and_earlier_votes_are_kept(store, ask):
    _, (answer_id,) = ask()
    store.record_vote(response_id=answer_id, user="alice", rating=1)
    latest = store.record_vote(response_id=answer_id, user="alice", rating=-1, reason="wrong", comment="It is 4.")
    assert store.latest_votes() == [
        Vote(
            id=latest,
            response_id=answer_id,
            user="alice",
            rating=-1,
            reason="wrong",
            comment="It is 4.",
            created_at="2025-01-01T00:00:05.000+00:00",
        )
    ]
    assert store.stats()["votes"] == 2


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"rating": 0}, "A rating must be 1 (thumbs up) or -1 (thumbs down); got 0."),
        ({"rating": True}, "A rating must be 1 (thumbs up) or -1 (thumbs down); got True."),
        ({"reason": "r" * 201}, "A vote reason can be at most 200 characters; got 201."),
        ({"comment": "c" * 2001}, "A comment can be at most 2,000 characters; got 2,001."),
    ],
)
def test_bad_votes_are_refused_and_nothing_is_written(store, ask, dump, changes, message):
    _, (answer_id,) = ask()
    before = dump()
    with pytest.raises(InvalidInput) as error:
        store.record_vote(**{"response_id": answer_id, "user": "alice", "rating": 1, **changes})
    assert str(error.value) == message
    assert dump() == before


def test_only_the_owners_existing_answers_take_votes(store, ask):
    prompt_id, (answer_id,) = ask()
    with pytest.raises(NotFound, match="^Response 99 does not exist.$"):
        store.record_vote(response_id=99, user="alice", rating=1)
    with pytest.raises(NotFound, match=f"^Response {answer_id} does not exist.$"):
        store.record_vote(response_id=answer_id, user="mallory", rating=-1)
    with pytest.raises(InvalidInput, match=f"^Message {prompt_id} is a user message; only assistant answers"):
        store.record_vote(response_id=prompt_id, user="alice", rating=1)
    assert store.stats()["votes"] == 0
