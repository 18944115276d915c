"""ChatService.stream closes the engine's generator before it writes the answers, so a failed final
write leaves no engine request open; the answer is then marked 'incomplete' rather than left
'streaming', and the error reaches the caller instead of the stream ending in silence."""

import asyncio
import sqlite3
from types import SimpleNamespace

import pytest

from serving.chat import ChatService
from serving.config import SamplingConfig
from serving.backend import ActiveModel
from storage import FeedbackStore

CHUNKS = [
    'data: {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}\n\n',
    'data: {"choices": [{"index": 0, "delta": {"content": "Four."}, "finish_reason": "stop"}]}\n\n',
    "data: [DONE]\n\n",
]


class FakeEngine:
    """Stands in for serving.engine.Engine: chat() streams CHUNKS and notes in `events` when its
    generator is closed."""

    served_name = "m"

    def __init__(self, events: list):
        self.active = ActiveModel(name="m", adapter_version=None)
        self.events = events

    async def chat(self, request):
        async def chunks():
            try:
                for sse in CHUNKS:
                    yield sse
            finally:
                self.events.append("engine closed")

        return chunks()


class FailingStore(FeedbackStore):
    """The real store whose final write of an answer fails as a full disk would."""

    events: list

    def finish_answer(self, message_id, **_):
        self.events.append("write")
        raise sqlite3.OperationalError("database or disk is full")


def request():
    return SimpleNamespace(model=None, n=1, max_completion_tokens=None, max_tokens=None, temperature=None,
                           top_p=None, seed=None, messages=[{"role": "user", "content": "What is 2+2?"}],
                           stream_options=SimpleNamespace(include_usage=True))


async def drain(stream):
    return [event async for event in stream]


def test_a_failed_write_comes_after_the_engine_closed_and_reaches_the_caller(tmp_path):
    events = []
    with FailingStore.open(tmp_path) as store:
        store.events = events
        chat = ChatService(engine=FakeEngine(events), store=store, sampling=SamplingConfig())

        with pytest.raises(sqlite3.OperationalError, match="disk is full"):
            asyncio.run(drain(chat.stream(request(), user="alice")))

        assert events == ["engine closed", "write"]
        assert [m.status for m in store.messages(role="assistant")] == ["incomplete"]
