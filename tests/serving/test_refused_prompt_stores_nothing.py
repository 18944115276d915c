"""The UI's send and Compare store the prompt (and a new conversation) only once the engine has
accepted the request: a prompt vLLM refuses, or a Compare asking for more answers than can be
ranked, leaves no row for training to pick up. Accepted ones are stored as before."""

import asyncio
import sqlite3

import pytest
from sqlite_utils import Database

from serving.chat import ChatError, ChatService
from serving.chat_actions import ChatView, ConversationActions
from serving.config import SamplingConfig
from storage import FeedbackStore
from tests.serving.fake_engine import FakeEngine

TOO_LONG = "This model's maximum context length is 2048 tokens. However, your request has 5000 input tokens."


@pytest.fixture
def engine():
    return FakeEngine(answer="Hi there.")


@pytest.fixture
def store():
    # check_same_thread=False, as FeedbackStore.open does: the actions store from worker threads.
    return FeedbackStore(Database(sqlite3.connect(":memory:", check_same_thread=False)))


@pytest.fixture
def actions(engine, store):
    chat = ChatService(engine=engine, store=store, sampling=SamplingConfig())
    return ConversationActions(chat=chat, store=store, system_prompt="Be brief.")


def last(gen):
    async def drain():
        update = None
        async for update in gen:
            pass
        return update

    return asyncio.run(drain())


def test_a_refused_first_message_stores_no_conversation(actions, engine, store):
    engine.refuse = TOO_LONG
    with pytest.raises(ChatError, match="maximum context length"):
        last(actions.send("A very long message", ChatView(), user="alice"))
    assert set(store.stats().values()) == {0}


def test_a_refused_message_in_a_conversation_stores_nothing(actions, engine, store):
    _, view = last(actions.send("Hello", ChatView(), user="alice"))
    before = store.stats()

    engine.refuse = TOO_LONG
    with pytest.raises(ChatError, match="maximum context length"):
        last(actions.send("A very long message", view, user="alice"))
    assert store.stats() == before


def test_an_accepted_message_is_stored_with_its_answer(actions, engine, store):
    messages, view = last(actions.send("Hello", ChatView(), user="alice"))

    assert engine.requests[0].messages == [{"role": "system", "content": "Be brief."},
                                           {"role": "user", "content": "Hello"}]
    thread = store.thread(view.conversation_id, user="alice")
    assert [(m.role, m.content, m.model) for m in thread] == [
        ("system", "Be brief.", None), ("user", "Hello", None), ("assistant", "Hi there.", "fake-model")]
    assert view.ids == [thread[1].id, thread[2].id] and messages[-1]["content"].startswith("Hi there.")


def test_a_refused_compare_stores_nothing(actions, engine, store):
    engine.refuse = TOO_LONG
    with pytest.raises(ChatError, match="maximum context length"):
        last(actions.candidates("A very long prompt", 3, user="alice"))
    assert set(store.stats().values()) == {0}


@pytest.mark.parametrize("k", [5, 1, True, "3"])
def test_a_compare_of_too_many_answers_is_refused_before_the_engine(actions, engine, store, k):
    with pytest.raises(ChatError) as refused:
        last(actions.candidates("Name a fruit.", k, user="alice"))
    assert str(refused.value) == f"Compare makes between 2 and 4 answers to rank; got {k!r}."
    assert engine.requests == [] and set(store.stats().values()) == {0}


def test_an_accepted_compare_stores_its_prompt_and_answers(actions, store):
    ids, texts = last(actions.candidates("Name a fruit.", 3, user="alice"))
    assert texts == ["Hi there."] * 3
    assert store.record_ranking(user="alice", response_ids=ids)


def test_regenerate_adds_an_answer_to_the_same_prompt(actions, engine, store):
    _, view = last(actions.send("Hello", ChatView(), user="alice"))
    engine.answer = "Hello again."
    _, view = last(actions.regenerate(view, 1, user="alice"))

    prompt, first = view.ids[0], store.message(view.ids[1])
    answers = [m for m in store.conversation(view.conversation_id, user="alice").messages if m.role == "assistant"]
    assert [(m.parent_id, m.content) for m in answers] == [(prompt, "Hi there."), (prompt, "Hello again.")]
    assert first.content == "Hello again."  # the thread shows the newest answer
