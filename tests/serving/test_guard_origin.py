"""A web page from another site cannot drive the API (cross-site request forgery): a request whose
Origin is not the app's own, or that the browser marks cross-site, is a 403 that reaches no route.
Clients that send no Origin (curl, the openai SDK, gradio_client) and the app's own page pass."""

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serving.config import ServeConfig
from serving.guard import add_guards


@pytest.fixture
def calls():
    return []


@pytest.fixture
def client(calls):
    app = FastAPI()

    @app.post("/api/adapters/{version}/activate")
    async def activate(version: str):
        calls.append(version)
        return {"active": None}

    add_guards(app, ServeConfig(allowed_hosts="chat.example.com"), local=False)  # --auth: the checks still hold
    return TestClient(app, base_url="http://127.0.0.1:7860")


@pytest.mark.parametrize("headers", [
    {"origin": "http://evil.example"},
    {"origin": "http://127.0.0.1:8000"},  # another local server's page: another origin
    {"origin": "null"},  # a sandboxed frame or a file:// page
    {"sec-fetch-site": "cross-site"},
])
def test_cross_site_requests_are_refused(client, calls, headers):
    r = client.post("/api/adapters/base/activate", headers=headers)

    assert r.status_code == 403
    assert r.json()["error"] == {"message": "The API does not take requests from other sites' web pages.",
                                 "type": "cross_origin", "code": 403}
    assert calls == []


@pytest.mark.parametrize("headers", [
    {},  # curl, SDKs
    {"origin": "http://127.0.0.1:7860", "sec-fetch-site": "same-origin"},  # the app's own page
    {"origin": "https://chat.example.com"},  # a listed name: behind a proxy that rewrites Host
])
def test_own_and_originless_requests_pass(client, calls, headers):
    assert client.post("/api/adapters/base/activate", headers=headers).status_code == 200
    assert calls == ["base"]
