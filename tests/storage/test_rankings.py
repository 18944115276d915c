import pytest

from storage import InvalidInput, NotFound, Ranking


def test_ranking_stores_answers_best_first(store, ask):
    prompt_id, (a, b, c) = ask(answers=["a", "b", "c"])
    ranking_id = store.record_ranking(user="alice", response_ids=[c, a, b])
    assert store.rankings() == [
        Ranking(
            id=ranking_id,
            user="alice",
            prompt_id=prompt_id,
            k=3,
            source="ui",
            import_key=None,
            created_at="2025-01-01T00:00:06.000+00:00",
            response_ids=[c, a, b],
        )
    ]


def check_refused(store, dump, error_type, message, **kwargs):
    before = dump()
    with pytest.raises(error_type) as error:
        store.record_ranking(user=kwargs.pop("user", "alice"), **kwargs)
    assert str(error.value) == message
    assert dump() == before


def test_too_few_or_too_many_answers(store, ask, dump):
    _, ids = ask(answers=["a", "b", "c", "d", "e"])
    check_refused(store, dump, InvalidInput, "A ranking needs between 2 and 4 answers; got 1.", response_ids=ids[:1])
    check_refused(store, dump, InvalidInput, "A ranking needs between 2 and 4 answers; got 5.", response_ids=ids)


def test_the_same_answer_twice(store, ask, dump):
    _, (a, b) = ask(answers=["a", "b"])
    message = f"A ranking cannot list the same answer twice; {a} appears more than once."
    check_refused(store, dump, InvalidInput, message, response_ids=[a, b, a])


def test_answers_to_different_prompts(store, ask, dump):
    _, (a,) = ask("first?", ["a"])
    _, (b,) = ask("second?", ["b"])
    check_refused(store, dump, InvalidInput, "All ranked answers must answer the same prompt.", response_ids=[a, b])


def test_unknown_or_foreign_answers(store, ask, dump):
    _, (a, b) = ask(answers=["a", "b"])
    check_refused(store, dump, NotFound, "Response 99 does not exist.", response_ids=[a, 99])
    check_refused(store, dump, NotFound, f"Response {a} does not exist.", response_ids=[a, b], user="mallory")


def test_a_non_assistant_message(store, ask, dump):
    prompt_id, (a,) = ask(answers=["a"])
    message = f"Message {prompt_id} is a user message; only assistant answers take feedback."
    check_refused(store, dump, InvalidInput, message, response_ids=[a, prompt_id])


def test_an_import_key_is_used_once(store, ask, dump):
    _, (a, b) = ask(answers=["a", "b"])
    store.record_ranking(user="alice", response_ids=[a, b], source="import", import_key="k1")
    check_refused(store, dump, InvalidInput, "This ranking has already been imported.",
                  response_ids=[b, a], source="import", import_key="k1")
