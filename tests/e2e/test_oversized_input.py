"""Oversized bodies and prompts beyond the model's context are refused with a clear message before
they reach the engine, and write nothing: also a chunked upload that sends no Content-Length, and
a streaming request (refused with a status, not inside a 200 stream)."""

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.conftest import USERS

TOO_LONG = "hi " * 5000  # ~5,000 tokens; the app serves a 2,048-token context


def chunked(total: int, size: int = 64 * 1024):
    for _ in range(total // size):
        yield b" " * size


def test_chunked_oversized_body_is_413(app_server, alice):
    before = app_server.counts()

    r = alice.post("/v1/chat/completions", content=chunked(4_000_000), headers={"content-type": "application/json"})

    assert r.status_code == 413
    assert r.json()["error"]["message"] == "The request body is larger than 1000000 bytes."
    assert app_server.counts() == before


@pytest.mark.parametrize("stream", [False, True])
def test_prompt_beyond_the_context_is_400_and_says_why(app_server, alice, stream):
    before = app_server.counts()

    r = alice.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": TOO_LONG}],
                                                  "max_tokens": 4, "stream": stream})

    assert r.status_code == 400
    assert "maximum context length is 2048 tokens" in r.json()["error"]["message"]
    assert app_server.counts() == before


def test_ui_shows_why_a_prompt_is_too_long(app_server):
    client = Client(app_server.url, auth=("alice", USERS["alice"]), verbose=False)

    with pytest.raises(AppError, match="maximum context length"):
        client.predict(TOO_LONG, api_name="/send")
