"""ChatService.stream stores the prompt and its answers' rows in one transaction: when the answers'
rows cannot be written, the prompt is not left behind as a conversation without an answer."""

import asyncio
import sqlite3
from types import SimpleNamespace

import pytest

from serving.chat import ChatService
from serving.config import SamplingConfig
from storage import FeedbackStore
from tests.serving.fake_engine import FakeEngine


class StartFails(FeedbackStore):
    def start_answers(self, **_):
        raise sqlite3.OperationalError("database or disk is full")


def request():
    return SimpleNamespace(model=None, n=1, stream=True, max_completion_tokens=None, max_tokens=None,
                           temperature=None, top_p=None, seed=None,
                           messages=[{"role": "user", "content": "What is 2+2?"}],
                           stream_options=SimpleNamespace(include_usage=True))


async def drain(stream):
    return [event async for event in stream]


def test_no_prompt_is_left_without_its_answers(tmp_path):
    with StartFails.open(tmp_path) as store:
        chat = ChatService(engine=FakeEngine(answer="Four."), store=store, sampling=SamplingConfig())
        with pytest.raises(sqlite3.OperationalError, match="disk is full"):
            asyncio.run(drain(chat.stream(request(), user="alice")))
        assert store.messages() == []
        assert store.conversations(user="alice") == []


def test_a_streamed_answer_is_stored_with_its_prompt(tmp_path):
    with FeedbackStore.open(tmp_path) as store:
        chat = ChatService(engine=FakeEngine(answer="Four."), store=store, sampling=SamplingConfig())
        asyncio.run(drain(chat.stream(request(), user="alice")))
        assert [(m.role, m.content, m.status) for m in store.messages()] == [
            ("user", "What is 2+2?", "complete"), ("assistant", "Four.", "complete")]
