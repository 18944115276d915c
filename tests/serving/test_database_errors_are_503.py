"""A database that fails (locked past the busy timeout, disk full, I/O error) answers a JSON 503
with a sentence and Retry-After, in the API's error shape, not a plain-text 500."""

import sqlite3
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serving.api import Auth, build_api, install_error_handlers
from serving.config import SamplingConfig
from serving.feedback import FeedbackService
from storage import FeedbackStore


class FailingStore(FeedbackStore):
    """The real store whose writes of feedback fail the way SQLite fails."""

    error: sqlite3.Error

    def record_vote(self, **_):
        raise self.error


@pytest.fixture
def store(tmp_path):
    with FailingStore.open(tmp_path) as store:
        yield store


@pytest.fixture
def client(store):
    app = FastAPI()
    install_error_handlers(app)
    chat = SimpleNamespace(sampling=SamplingConfig())  # the feedback routes never reach the engine
    app.include_router(build_api(chat=chat, store=store, feedback=FeedbackService(store=store),
                                 auth=Auth({}), max_request_bytes=100_000))
    return TestClient(app)


@pytest.mark.parametrize("error", [sqlite3.OperationalError("database is locked"),
                                   sqlite3.OperationalError("database or disk is full"),
                                   sqlite3.DatabaseError("disk I/O error")])
def test_a_failing_database_is_a_503_with_a_sentence(store, client, error):
    store.error = error
    response = client.post("/api/feedback", json={"response_id": 1, "rating": 1})

    assert response.status_code == 503
    assert response.json() == {"error": {"message": "The database is busy or unavailable; try again in a moment.",
                                         "type": "service_unavailable", "code": 503}}
    assert response.headers["Retry-After"] == "5"


def test_a_broken_constraint_stays_a_server_error(store, client):
    store.error = sqlite3.IntegrityError("UNIQUE constraint failed: votes.id")
    with pytest.raises(sqlite3.IntegrityError):  # a bug to fix, not something to retry
        client.post("/api/feedback", json={"response_id": 1, "rating": 1})
