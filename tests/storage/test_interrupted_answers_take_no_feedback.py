"""An answer a crash cut off (marked at start-up) takes no vote, ranking or rewrite, with a sentence;
one the client stopped reading ('incomplete' by a hang-up) still takes feedback as before."""

import pytest

from storage import InvalidInput

CUT_OFF = "Answer {} was cut off when the server stopped, so it takes no feedback; ask again for a complete answer."


def answers(store, ask, n=3):
    prompt_id, _ = ask(answers=[])
    conversation_id = store.message(prompt_id).conversation_id
    return store.start_answers(conversation_id=conversation_id, user="alice", parent_id=prompt_id, n=n, model="m")


def test_a_crashed_answer_takes_no_feedback(store, ask):
    cut_off, hung_up, done = answers(store, ask)
    store.finish_answer(hung_up, content="Fo", status="incomplete")
    store.finish_answer(done, content="Four.")
    store.mark_interrupted_answers()
    before = store.stats()

    with pytest.raises(InvalidInput, match=CUT_OFF.format(cut_off)):
        store.record_vote(response_id=cut_off, user="alice", rating=-1)
    with pytest.raises(InvalidInput, match=CUT_OFF.format(cut_off)):
        store.record_ranking(user="alice", response_ids=[done, cut_off])
    with pytest.raises(InvalidInput, match=CUT_OFF.format(cut_off)):
        store.record_demonstration(response_id=cut_off, user="alice", content="Four.")
    assert store.stats() == before
    assert store.message(cut_off).finish_reason == "interrupted"

    assert store.record_vote(response_id=hung_up, user="alice", rating=-1)
    assert store.record_ranking(user="alice", response_ids=[done, hung_up])
