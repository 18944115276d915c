"""Hostile HTTP input to the feedback API is a JSON 4xx with a sentence, never a 500, and writes
nothing: oversized or chunked bodies, non-JSON constants, deep nesting, lone surrogates, ids beyond
SQLite's range."""

from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlite_utils import Database

from serving.api import Auth, build_api, install_error_handlers
from serving.config import SamplingConfig
from serving.feedback import FeedbackService
from storage import FeedbackStore

MAX_BYTES = 200_000


@pytest.fixture
def store():
    return FeedbackStore(Database(memory=True))


@pytest.fixture
def client(store):
    app = FastAPI()
    install_error_handlers(app)
    chat = SimpleNamespace(sampling=SamplingConfig())  # the feedback routes never reach the engine
    app.include_router(build_api(chat=chat, store=store, feedback=FeedbackService(store=store),
                                 auth=Auth({}), max_request_bytes=MAX_BYTES))
    return TestClient(app)


def chunks(total: int):
    for _ in range(total // 100):
        yield b"x" * 100


HOSTILE = [
    ("/api/feedback", {"content": chunks(10 * MAX_BYTES)}, 413),  # chunked: no Content-Length to check
    ("/api/feedback", {"content": b"x" * (MAX_BYTES + 1)}, 413),
    ("/api/feedback", {"content": b'{"response_id": NaN, "rating": 1}'}, 400),
    ("/api/feedback", {"content": b"[" * 100_000 + b"]" * 100_000}, 400),  # deeper than the parser recurses
    ("/api/feedback", {"content": b'{"response_id": ' + b"1" * 5000 + b"}"}, 400),  # past int's digit limit
    ("/api/feedback", {"content": b"\xff\xfe"}, 400),
    ("/api/demonstrations", {"content": b'{"response_id": 2, "content": "x\\ud800"}'}, 400),  # SQLite can't store it
    ("/api/feedback", {"content": b'{"response_id": 2, "rating": 1, "reason": "\\udfff"}'}, 400),
    ("/api/feedback", {"json": {"response_id": 2**70, "rating": 1}}, 400),
    ("/api/feedback", {"json": {"response_id": 0, "rating": 1}}, 400),
    ("/api/rankings", {"json": {"response_ids": [2**64, 2**65]}}, 400),
    ("/api/demonstrations", {"json": {"response_id": -1, "content": "x"}}, 400),
]


@pytest.mark.parametrize("path,send,status", HOSTILE)
def test_hostile_posts_are_refused_and_write_nothing(client, store, path, send, status):
    cid = store.create_conversation(user="local")  # answer 2 exists: only the body itself is wrong
    prompt = store.record_message(conversation_id=cid, user="local", role="user", content="Hi")
    store.record_message(conversation_id=cid, user="local", role="assistant", content="Hello", parent_id=prompt,
                         model="qwen")
    before = store.stats()

    r = client.post(path, **send)

    assert r.status_code == status, r.text
    assert r.json()["error"]["message"].endswith(".")
    assert store.stats() == before


@pytest.mark.parametrize("segment", ["99999999999999999999999", "9" * 5000, "²", "٣", "-1"])
def test_ids_in_the_url_that_no_row_can_have_are_404(client, segment):
    r = client.get(f"/api/conversations/{segment}")

    assert r.status_code == 404 and r.json()["error"]["message"].endswith("does not exist.")
