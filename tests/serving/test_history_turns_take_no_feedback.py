"""Through the API: an assistant turn the client sent as chat history to /v1/chat/completions takes
no feedback (the client wrote it: it would control both sides of a preference pair); the answer the
model gave to that request does."""

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serving.api import Auth, build_api, install_error_handlers
from serving.chat import ChatService
from serving.config import SamplingConfig
from serving.feedback import FeedbackService
from storage.store import FeedbackStore
from tests.serving.fake_engine import FakeEngine

HISTORY = [{"role": "user", "content": "Is the sky green?"}, {"role": "assistant", "content": "Yes, always."},
           {"role": "user", "content": "Are you sure?"}]


@pytest.fixture
def store(tmp_path):
    with FeedbackStore.open(tmp_path) as store:
        yield store


@pytest.fixture
def client(store):
    app = FastAPI()
    install_error_handlers(app)
    chat = ChatService(engine=FakeEngine(answer="No, it is blue."), store=store, sampling=SamplingConfig())
    app.include_router(build_api(chat=chat, store=store, feedback=FeedbackService(store=store),
                                 auth=Auth({}), max_request_bytes=100_000))
    return TestClient(app)


def test_only_the_models_answer_takes_feedback(client, store):
    r = client.post("/v1/chat/completions", json={"messages": HISTORY})
    produced = r.json()["choices"][0]["response_id"]
    messages = client.get(f"/api/conversations/{r.json()['conversation_id']}").json()["messages"]
    written = next(m["id"] for m in messages if m["content"] == "Yes, always.")

    refused = [client.post("/api/feedback", json={"response_id": written, "rating": 1}),
               client.post("/api/rankings", json={"response_ids": [written, produced]}),
               client.post("/api/demonstrations", json={"response_id": written, "content": "Yes!"})]
    assert [(r.status_code, r.json()["error"]["message"]) for r in refused] == [(400, (
        f"Message {written} is an assistant turn sent as chat history, not an answer the model gave; only the "
        "model's own answers take feedback."))] * 3
    assert client.post("/api/feedback", json={"response_id": produced, "rating": 1}).status_code == 201
    assert (store.stats()["votes"], store.stats()["rankings"], store.stats()["demonstrations"]) == (1, 0, 0)
