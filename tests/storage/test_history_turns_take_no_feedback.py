"""An assistant turn a client wrote into its chat history (stored with no model) takes no vote,
ranking or demonstration: otherwise a user could write both sides of a preference pair. Answers the
model produced, and imported ones, still do."""

import pytest

from storage import InvalidInput

REFUSED = ("Message {} is an assistant turn sent as chat history, not an answer the model gave; only the "
           "model's own answers take feedback.")


@pytest.fixture
def history_turn(store):
    """A conversation as /v1/chat/completions stores a request's history: no model on any turn."""
    cid = store.create_conversation(user="alice", source="api")
    prompt = store.record_message(conversation_id=cid, user="alice", role="user", content="Hi")
    written = store.record_message(conversation_id=cid, user="alice", role="assistant", content="Yes!",
                                   parent_id=prompt)
    (produced,) = store.start_answers(conversation_id=cid, user="alice", parent_id=prompt, model="qwen")
    store.finish_answer(produced, content="Hello.")
    return written, produced


@pytest.mark.parametrize("feedback", [
    lambda store, written, produced: store.record_vote(response_id=written, user="alice", rating=1),
    lambda store, written, produced: store.record_ranking(user="alice", response_ids=[written, produced]),
    lambda store, written, produced: store.record_demonstration(response_id=written, user="alice",
                                                                content="Better."),
])
def test_feedback_on_a_history_turn_is_refused_and_writes_nothing(store, dump, history_turn, feedback):
    written, produced = history_turn
    before = dump()

    with pytest.raises(InvalidInput) as refused:
        feedback(store, written, produced)
    assert str(refused.value) == REFUSED.format(written)
    assert dump() == before


def test_a_produced_answer_still_takes_feedback(store, history_turn):
    _, produced = history_turn
    assert store.record_vote(response_id=produced, user="alice", rating=1)
    assert store.record_demonstration(response_id=produced, user="alice", content="Better.")
