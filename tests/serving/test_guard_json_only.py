"""The API takes bodies as application/json only: a form or text/plain post, which any web page can
send across sites without asking, is a 415 that writes nothing. The worker's tar upload is exempt."""

from types import SimpleNamespace

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from serving.api import Auth, build_api, install_error_handlers
from serving.config import SamplingConfig, ServeConfig
from serving.feedback import FeedbackService
from serving.guard import add_guards
from storage import FeedbackStore

VOTE = b'{"response_id": 2, "rating": -1}'


@pytest.fixture
def store(tmp_path):
    store = FeedbackStore.open(tmp_path)
    cid = store.create_conversation(user="local")
    prompt = store.record_message(conversation_id=cid, user="local", role="user", content="Hi")
    store.record_message(conversation_id=cid, user="local", role="assistant", content="Hello",
                         model="SmolLM2-135M-Instruct", parent_id=prompt)
    return store


@pytest.fixture
def client(store):
    app = FastAPI()
    install_error_handlers(app)
    chat = SimpleNamespace(sampling=SamplingConfig())  # the feedback routes never reach the engine
    app.include_router(build_api(chat=chat, store=store, feedback=FeedbackService(store=store),
                                 auth=Auth({}), max_request_bytes=1000))

    @app.post("/api/align/worker/rounds/{round_id}/adapter")
    async def upload(round_id: str, request: Request):
        return {"received": len(await request.body())}

    add_guards(app, ServeConfig(max_request_bytes=1000), local=True)
    return TestClient(app, base_url="http://127.0.0.1:7860")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          "application/jsonp", None])
def test_non_json_bodies_are_refused_and_write_nothing(client, store, content_type):
    before = store.stats()
    headers = {"content-type": content_type} if content_type else {}

    r = client.post("/api/feedback", content=VOTE, headers=headers)

    assert r.status_code == 415
    assert r.json()["error"] == {"message": "The API takes JSON bodies only, sent with 'Content-Type: "
                                            "application/json'.", "type": "unsupported_media_type", "code": 415}
    assert store.stats() == before


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"])
def test_json_bodies_pass(client, content_type):
    assert client.post("/api/feedback", content=VOTE, headers={"content-type": content_type}).status_code == 201


def test_the_worker_upload_is_exempt(client):
    r = client.post("/api/align/worker/rounds/7/adapter", content=b"x" * 5000,
                    headers={"content-type": "application/x-tar"})

    assert (r.status_code, r.json()) == (200, {"received": 5000})  # past the 1,000-byte cap too: it caps itself
