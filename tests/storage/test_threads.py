import pytest

from storage import NotFound


def test_thread_follows_the_most_recent_branch(store):
    conversation_id = store.create_conversation(user="alice")

    def say(role, content, parent_id):
        return store.record_message(
            conversation_id=conversation_id, user="alice", role=role, content=content, parent_id=parent_id
        )

    system = say("system", "Be brief.", None)
    question = say("user", "Hi", system)
    first = say("assistant", "Hello", question)
    follow_up = say("user", "Name a color", first)
    say("assistant", "Red", follow_up)
    regenerated = say("assistant", "Hey", question)  # a regeneration starts a new branch

    assert [m.id for m in store.thread(conversation_id, user="alice")] == [system, question, regenerated]
    assert store.context(follow_up) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Name a color"},
    ]
    assert len(store.conversation(conversation_id, user="alice").messages) == 6


def test_conversations_are_listed_newest_first_with_a_title(store, ask):
    ask("  What   is the capital of France, and why is it Paris rather than Lyon?")
    second = store.create_conversation(user="alice", title="Colors")
    store.create_conversation(user="bob")

    listing = store.conversations(user="alice")
    assert [c.id for c in listing] == [second, 1]
    assert [c.title for c in listing] == ["Colors", "What is the capital of France, and why is it Paris rather t…"]
    assert store.conversations(user="alice", limit=1)[0].id == second


def test_another_users_rows_are_not_found(store, ask):
    prompt_id, _ = ask()
    conversation_id = store.message(prompt_id).conversation_id
    with pytest.raises(NotFound, match=f"^Conversation {conversation_id} does not exist.$"):
        store.thread(conversation_id, user="bob")
    with pytest.raises(NotFound, match=f"^Conversation {conversation_id} does not exist.$"):
        store.conversation(conversation_id, user="bob")
    with pytest.raises(NotFound, match=f"^Message {prompt_id} does not exist.$"):
        store.message(prompt_id, user="bob")
    with pytest.raises(NotFound, match=f"^Message {prompt_id} does not exist.$"):
        store.context(prompt_id, user="bob")
    assert store.conversations(user="bob") == []


def test_empty_conversation_has_an_empty_thread(store):
    conversation_id = store.create_conversation(user="alice")
    assert store.thread(conversation_id, user="alice") == []
    assert store.conversation(conversation_id, user="alice").title is None
