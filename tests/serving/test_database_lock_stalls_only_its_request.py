"""A lock held on the database by another process (an import, a round) holds up only the request
that writes: it ends in a 503 after the busy timeout, and a request that needs no database (here
/healthz) answers meanwhile, because store calls do not run on the event loop."""

import sqlite3
import threading
import time
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serving.api import Auth, build_api, install_error_handlers
from serving.config import SamplingConfig
from serving.feedback import FeedbackService
from serving.backend import ActiveModel
from storage import FeedbackStore, StorageConfig, db_path

BUSY_TIMEOUT_S = 2.0


@pytest.fixture
def store(tmp_path):
    with FeedbackStore.open(tmp_path, config=StorageConfig(data_dir=str(tmp_path),
                                                           busy_timeout_s=BUSY_TIMEOUT_S)) as store:
        yield store


@pytest.fixture
def client(store):
    app = FastAPI()
    install_error_handlers(app)
    engine = SimpleNamespace(served_name="m", active=ActiveModel(name="m", adapter_version=None))
    chat = SimpleNamespace(engine=engine, sampling=SamplingConfig())
    app.include_router(build_api(chat=chat, store=store, feedback=FeedbackService(store=store),
                                 auth=Auth({}), max_request_bytes=100_000))
    with TestClient(app) as client:  # one event loop for every request, as in the server
        yield client


def answer(store) -> int:
    cid = store.create_conversation(user="local")
    prompt = store.record_message(conversation_id=cid, user="local", role="user", content="Hi")
    return store.record_message(conversation_id=cid, user="local", role="assistant", content="Hello",
                                parent_id=prompt)


def test_a_locked_database_stalls_only_the_request_that_writes(store, client, tmp_path):
    response_id = answer(store)
    other = sqlite3.connect(db_path(tmp_path), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # holds the write lock, as a long import would
    results = []
    writer = threading.Thread(target=lambda: results.append(
        client.post("/api/feedback", json={"response_id": response_id, "rating": 1})))
    try:
        writer.start()
        time.sleep(0.3)  # the vote is now waiting for the lock
        start = time.monotonic()
        health = client.get("/healthz")
        waited = time.monotonic() - start
        writer.join()
    finally:
        other.rollback()
        other.close()

    assert health.status_code == 200 and waited < BUSY_TIMEOUT_S / 2
    assert results[0].status_code == 503 and results[0].headers["Retry-After"] == "5"
    assert store.stats()["votes"] == 0
