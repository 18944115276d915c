"""The UI's generating actions (send, regenerate, compare) are refused over the user's limit before
anything is stored; feedback is never limited."""

import asyncio
from types import SimpleNamespace

import pytest
from sqlite_utils import Database

from serving.chat_actions import ChatView, ConversationActions
from serving.config import SamplingConfig
from serving.feedback import FeedbackService
from serving.limits import Rate, RateLimited, RateLimiter
from storage import FeedbackStore


@pytest.fixture
def store():
    return FeedbackStore(Database(memory=True))


@pytest.fixture
def actions(store):
    limiter = RateLimiter(Rate(1, 3600))
    limiter.admit("alice")  # alice's one request this hour is spent
    no_engine = SimpleNamespace(sampling=SamplingConfig())  # generation is never reached
    return ConversationActions(chat=no_engine, store=store, limiter=limiter)


def first(gen):
    return asyncio.run(anext(gen))


@pytest.mark.parametrize("start", [
    lambda a: a.send("Hello", ChatView(), user="alice"),
    lambda a: a.regenerate(ChatView(conversation_id=1, ids=[1, 2]), 1, user="alice"),
    lambda a: a.candidates("Name a fruit.", 3, user="alice"),
])
def test_generation_over_the_limit_stores_nothing(store, actions, start):
    before = store.stats()

    with pytest.raises(RateLimited, match="Too many requests"):
        first(start(actions))
    assert store.stats() == before


def test_feedback_is_not_limited(store, actions):
    cid = store.create_conversation(user="alice")
    prompt = store.record_message(conversation_id=cid, user="alice", role="user", content="Hi")
    answer = store.record_message(conversation_id=cid, user="alice", role="assistant", content="Hello",
                                  parent_id=prompt, model="qwen")

    feedback = FeedbackService(store=store)  # what the UI's thumbs and rewrites call; it takes no limiter
    vote_id, demo_id = feedback.vote(answer, 1, user="alice"), feedback.rewrite(answer, "Hello!", user="alice")

    assert [(v.id, v.response_id, v.rating) for v in store.latest_votes()] == [(vote_id, answer, 1)]
    assert [(d.id, d.response_id, d.content) for d in store.demonstrations()] == [(demo_id, answer, "Hello!")]
