"""A retried feedback write with the same Idempotency-Key gets the original response and never a
second row; the same key with another body is a 409; keys belong to one user."""

from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serving.api import Auth, build_api, install_error_handlers
from serving.config import SamplingConfig
from serving.feedback import FeedbackService
from storage.store import FeedbackStore

USERS = {"alice": "a-pw", "bob": "b-pw"}


@pytest.fixture
def store(tmp_path):
    with FeedbackStore.open(tmp_path) as store:
        yield store


@pytest.fixture
def client(store):
    app = FastAPI()
    install_error_handlers(app)
    no_engine = SimpleNamespace(engine=None, sampling=SamplingConfig())  # feedback routes never generate
    app.include_router(build_api(chat=no_engine, store=store, feedback=FeedbackService(store=store),
                                 auth=Auth(USERS), max_request_bytes=100_000))

    def as_user(user):
        client = TestClient(app)
        client.auth = (user, USERS[user])
        return client

    return as_user


def answers(store, user, n=2):
    cid = store.create_conversation(user=user)
    prompt = store.record_message(conversation_id=cid, user=user, role="user", content="Hi")
    return [store.record_message(conversation_id=cid, user=user, role="assistant", content=f"Hello {i}",
                                 parent_id=prompt, model="qwen") for i in range(n)]


def test_a_retry_gets_the_first_response_and_writes_nothing(store, client):
    a, b = answers(store, "alice")
    alice = client("alice")
    requests = [("/api/feedback", {"response_id": a, "rating": -1, "reason": "Wrong"}),
                ("/api/rankings", {"response_ids": [b, a]}),
                ("/api/demonstrations", {"response_id": a, "content": "Better."})]
    for n, (path, body) in enumerate(requests):
        first = alice.post(path, json=body, headers={"Idempotency-Key": f"key-{n}"})
        retry = alice.post(path, json=dict(reversed(body.items())), headers={"Idempotency-Key": f"key-{n}"})
        assert (first.status_code, retry.status_code) == (201, 201)
        assert retry.json() == first.json()
        assert (first.headers.get("Idempotent-Replayed"), retry.headers["Idempotent-Replayed"]) == (None, "true")
    stats = store.stats()
    assert (stats["votes"], stats["rankings"], stats["demonstrations"]) == (1, 1, 1)


def test_the_same_key_with_another_request_is_a_409(store, client):
    a, b = answers(store, "alice")
    alice = client("alice")
    alice.post("/api/feedback", json={"response_id": a, "rating": 1}, headers={"Idempotency-Key": "k"})
    other_body = alice.post("/api/feedback", json={"response_id": a, "rating": -1}, headers={"Idempotency-Key": "k"})
    other_path = alice.post("/api/demonstrations", json={"response_id": a, "content": "x"},
                            headers={"Idempotency-Key": "k"})
    for r in (other_body, other_path):
        assert r.status_code == 409
        assert r.json()["error"]["message"] == ("This Idempotency-Key was already used for a different request; "
                                                "send a new key with a new request.")
    assert (store.stats()["votes"], store.stats()["demonstrations"]) == (1, 0)


def test_keys_belong_to_one_user(store, client):
    alices, bobs = answers(store, "alice", 1)[0], answers(store, "bob", 1)[0]
    r1 = client("alice").post("/api/feedback", json={"response_id": alices, "rating": 1},
                              headers={"Idempotency-Key": "same"})
    r2 = client("bob").post("/api/feedback", json={"response_id": bobs, "rating": 1},
                            headers={"Idempotency-Key": "same"})
    assert (r1.status_code, r2.status_code) == (201, 201)
    assert r1.json()["id"] != r2.json()["id"]
    assert store.stats()["votes"] == 2


def test_a_refused_request_keeps_no_key(store, client):
    a = answers(store, "alice", 1)[0]
    alice = client("alice")
    refused = alice.post("/api/feedback", json={"response_id": 999, "rating": 1}, headers={"Idempotency-Key": "k"})
    accepted = alice.post("/api/feedback", json={"response_id": a, "rating": 1}, headers={"Idempotency-Key": "k"})
    assert (refused.status_code, accepted.status_code) == (404, 201)
    assert store.db["idempotency_keys"].count == 1


@pytest.mark.parametrize("key", ["", "  ", "x" * 256, "naïve"])
def test_a_malformed_key_is_refused(store, client, key):
    a = answers(store, "alice", 1)[0]
    r = client("alice").post("/api/feedback", json={"response_id": a, "rating": 1},
                             headers={"Idempotency-Key": key.encode()})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "An Idempotency-Key must be 1 to 255 printable ASCII characters."
    assert store.stats()["votes"] == 0
