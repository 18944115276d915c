import pytest

from storage import InvalidInput


def test_answers_are_allocated_as_streaming_then_finished(store, ask):
    prompt_id, _ = ask(answers=[])
    conversation_id = store.message(prompt_id).conversation_id
    ids = store.start_answers(
        conversation_id=conversation_id, user="alice", parent_id=prompt_id, n=2, model="qwen",
        adapter_version=None, sampling={"n": 2},
    )
    assert [store.message(i).status for i in ids] == ["streaming", "streaming"]
    assert [store.message(i).content for i in ids] == ["", ""]

    store.finish_answer(ids[0], content="Four.", completion_tokens=2, prompt_tokens=9, latency_ms=80.0,
                        ttft_ms=12.0, finish_reason="stop")
    store.finish_answer(ids[1], content="Fo", finish_reason="abort", status="incomplete")
    first, second = store.message(ids[0]), store.message(ids[1])
    assert (first.content, first.status, first.completion_tokens, first.ttft_ms) == ("Four.", "complete", 2, 12.0)
    assert (second.content, second.status, second.finish_reason) == ("Fo", "incomplete", "abort")
    assert (first.parent_id, first.model, first.sampling) == (prompt_id, "qwen", {"n": 2})


def test_a_finished_answer_cannot_be_finished_again(store, ask):
    prompt_id, (answer_id,) = ask()
    with pytest.raises(InvalidInput, match=f"^Answer {answer_id} is not being streamed, so it cannot be finished.$"):
        store.finish_answer(answer_id, content="again")


def test_answers_must_reply_to_a_user_message(store, ask, dump):
    prompt_id, (answer_id,) = ask()
    conversation_id = store.message(prompt_id).conversation_id
    before = dump()
    message = f"^Answers must reply to a user message; message {answer_id} is an assistant message.$"
    with pytest.raises(InvalidInput, match=message):
        store.start_answers(conversation_id=conversation_id, user="alice", parent_id=answer_id, n=1,
                            model="qwen", adapter_version=None, sampling=None)
    with pytest.raises(InvalidInput, match="^Between 1 and 8 answers can be started at once; got 9.$"):
        store.start_answers(conversation_id=conversation_id, user="alice", parent_id=prompt_id, n=9,
                            model="qwen", adapter_version=None, sampling=None)
    assert dump() == before
