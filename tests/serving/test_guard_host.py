"""Without --auth the app answers only to the names it is bound to (plus --allowed-hosts), so a web
page cannot reach it through DNS rebinding; refusals are the API's JSON 400."""

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serving.config import ServeConfig
from serving.guard import HostPolicy, RequestGuard


def client(*, host="127.0.0.1", allowed_hosts="", local=True) -> TestClient:
    app = FastAPI()
    app.get("/api/admin/export")(lambda: {"rows": []})
    app.get("/gradio_api/info")(lambda: {"named_endpoints": {}})
    policy = HostPolicy.from_config(ServeConfig(host=host, allowed_hosts=allowed_hosts), local=local)
    return TestClient(RequestGuard(app, policy=policy))


@pytest.mark.parametrize("path", ["/api/admin/export", "/gradio_api/info"])
def test_a_rebound_name_is_refused(path):
    r = client().get(path, headers={"host": "evil.example:7860"})

    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_host"
    assert r.json()["error"]["message"] == ("This server does not answer to the host name 'evil.example'; if it "
                                            "should, start it with --allowed-hosts naming it.")


@pytest.mark.parametrize("host", ["localhost:7860", "localhost", "127.0.0.1:7860", "[::1]:7860", "LOCALHOST:7860"])
def test_loopback_names_are_accepted(host):
    assert client().get("/api/admin/export", headers={"host": host}).status_code == 200


def test_configured_names_are_accepted():
    c = client(allowed_hosts="chat.example.com, box.lan:8080")

    assert c.get("/api/admin/export", headers={"host": "chat.example.com"}).status_code == 200
    assert c.get("/api/admin/export", headers={"host": "box.lan:7860"}).status_code == 200
    assert c.get("/api/admin/export", headers={"host": "evil.example"}).status_code == 400


def test_star_accepts_any_host():
    assert client(allowed_hosts="*").get("/api/admin/export", headers={"host": "evil.example"}).status_code == 200


def test_a_wildcard_bind_takes_addresses_but_not_unlisted_names():
    c = client(host="0.0.0.0")

    assert c.get("/api/admin/export", headers={"host": "192.168.1.20:7860"}).status_code == 200
    assert c.get("/api/admin/export", headers={"host": "localhost:7860"}).status_code == 200
    assert c.get("/api/admin/export", headers={"host": "evil.example:7860"}).status_code == 400


def test_with_auth_any_host_unless_names_are_listed():
    any_name = client(host="0.0.0.0", local=False)
    assert any_name.get("/api/admin/export", headers={"host": "x.example"}).status_code == 200
    listed = client(host="0.0.0.0", local=False, allowed_hosts="chat.example.com")
    assert listed.get("/api/admin/export", headers={"host": "x.example"}).status_code == 400
