"""The Gradio routes take no more than the API does: a body over --max-request-bytes is a 413, refused
from its Content-Length at once or cut off while a chunked one streams in; and Gradio's upload route
(the UI has no file inputs) takes a few KB. Built the way app.py builds the app."""

import asyncio

import gradio as gr
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serving.config import ServeConfig
from serving.guard import UI_MAX_FILE_SIZE, add_guards

CAP = 1_000_000
TEN_MB = 10_000_000


@pytest.fixture(scope="module")
def client():
    with gr.Blocks() as ui:
        gr.Textbox()
    app = gr.mount_gradio_app(FastAPI(), ui, path="", max_file_size=UI_MAX_FILE_SIZE)
    add_guards(app, ServeConfig(max_request_bytes=CAP), local=True)
    return TestClient(app, base_url="http://127.0.0.1:7860")


def refused_too_large(r) -> bool:
    return r.status_code == 413 and r.json()["error"]["message"] == f"The request body is larger than {CAP} bytes."


def test_a_large_content_length_is_refused(client):
    assert refused_too_large(client.post("/gradio_api/queue/join", content=b"x" * TEN_MB,
                                         headers={"content-type": "application/json"}))


def test_a_large_chunked_body_is_cut_off(client):
    """Straight through ASGI: TestClient would read a streamed body whole before the app sees any."""
    read, sent = [], []

    async def receive():
        read.append(100_000)
        return {"type": "http.request", "body": b"x" * 100_000, "more_body": sum(read) < TEN_MB}

    async def send(message):
        sent.append(message)

    headers = [(b"host", b"127.0.0.1:7860"), (b"content-type", b"application/json"),
               (b"transfer-encoding", b"chunked")]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/gradio_api/queue/join", "raw_path": b"/gradio_api/queue/join", "root_path": "",
             "query_string": b"", "headers": headers, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 7860)}
    asyncio.run(client.app(scope, receive, send))

    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [413]
    assert sum(read) <= CAP + 100_000  # no further than the chunk that crossed the cap


def test_uploads_are_capped_at_a_few_kb(client):
    r = client.post("/gradio_api/upload", files={"files": ("a.txt", b"x" * 100_000, "text/plain")})

    assert r.status_code == 413
    assert client.post("/gradio_api/upload", files={"files": ("a.txt", b"x" * 100, "text/plain")}).status_code == 200


def test_the_host_check_covers_the_gradio_page(client):
    assert client.get("/", headers={"host": "evil.example:7860"}).status_code == 400
    assert client.get("/config", headers={"host": "localhost:7860"}).status_code == 200
