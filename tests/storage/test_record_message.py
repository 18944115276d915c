import pytest

from storage import InvalidInput, Message, NotFound


def test_message_is_stored_with_its_generation_details(store):
    conversation_id = store.create_conversation(user="alice")
    prompt_id = store.record_message(conversation_id=conversation_id, user="alice", role="user", content="Hi")
    answer_id = store.record_message(
        conversation_id=conversation_id,
        user="alice",
        role="assistant",
        content="Hello!",
        parent_id=prompt_id,
        model="qwen",
        adapter_version=3,
        sampling={"temperature": 0.7},
        prompt_tokens=5,
        completion_tokens=2,
        latency_ms=120.5,
        ttft_ms=30.0,
        finish_reason="stop",
    )
    assert store.message(answer_id) == Message(
        id=answer_id,
        conversation_id=conversation_id,
        parent_id=prompt_id,
        user="alice",
        role="assistant",
        content="Hello!",
        model="qwen",
        adapter_version=3,
        sampling={"temperature": 0.7},
        prompt_tokens=5,
        completion_tokens=2,
        latency_ms=120.5,
        ttft_ms=30.0,
        finish_reason="stop",
        status="complete",
        created_at="2025-01-01T00:00:03.000+00:00",
    )


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"role": "robot"}, "A role must be one of system, user, assistant; got 'robot'."),
        ({"content": "   "}, "A user message cannot be empty."),
        ({"content": "x" * 100_001}, "A message can be at most 100,000 characters; got 100,001."),
        ({"status": "done"}, "A message status must be one of complete, streaming, incomplete; got 'done'."),
        ({"user": ""}, "A user name is required."),
        ({"sampling": [0.7]}, "Sampling parameters must be a JSON object."),
    ],
)
def test_bad_values_are_refused_and_nothing_is_written(store, dump, changes, message):
    conversation_id = store.create_conversation(user="alice")
    before = dump()
    values = {"conversation_id": conversation_id, "user": "alice", "role": "user", "content": "Hi", **changes}
    with pytest.raises(InvalidInput) as error:
        store.record_message(**values)
    assert str(error.value) == message
    assert dump() == before


def test_unknown_or_foreign_conversation_is_not_found(store):
    bobs = store.create_conversation(user="bob")
    with pytest.raises(NotFound, match="^Conversation 99 does not exist.$"):
        store.record_message(conversation_id=99, user="alice", role="user", content="Hi")
    with pytest.raises(NotFound, match=f"^Conversation {bobs} does not exist.$"):
        store.record_message(conversation_id=bobs, user="alice", role="user", content="Hi")


def test_parent_must_be_in_the_same_conversation(store, ask):
    prompt_id, _ = ask()
    other = store.create_conversation(user="alice")
    with pytest.raises(InvalidInput, match="belongs to another conversation"):
        store.record_message(conversation_id=other, user="alice", role="user", content="Hi", parent_id=prompt_id)


def test_assistant_message_may_be_empty(store, ask):
    _, (answer_id,) = ask(answers=[""])
    assert store.message(answer_id).content == ""
