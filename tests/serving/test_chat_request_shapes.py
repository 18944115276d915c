"""A chat request whose fields have shapes vLLM's own pre-validators trip over (they iterate
`messages` before pydantic checks its type) is a JSON 400 with a sentence, not a 500."""

from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serving.api import Auth, build_api, install_error_handlers
from serving.config import SamplingConfig
from serving.feedback import FeedbackService


@pytest.fixture
def client():
    app = FastAPI()
    install_error_handlers(app)
    chat = SimpleNamespace(sampling=SamplingConfig())  # refused before the engine is reached
    app.include_router(build_api(chat=chat, store=None, feedback=FeedbackService(store=None),
                                 auth=Auth({}), max_request_bytes=100_000))
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("body", [{"messages": 1623}, {"messages": None}, {"messages": "hi"}, {},
                                  {"messages": [[1, 2]]}, {"messages": [7]}])
def test_odd_shapes_are_400_with_a_sentence(client, body):
    response = client.post("/v1/chat/completions", json=body)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"].endswith(".")
