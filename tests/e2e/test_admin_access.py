"""Every route in the published OpenAPI schema is either a user route or admin-only: bob (a user)
gets 403 on each admin route, a caller without credentials 401, and neither changes anything."""

import httpx
import pytest

from tests.conftest import USERS

USER_ROUTES = {  # a new route must be added here, or it is held to the admin rule below
    ("GET", "/healthz"), ("GET", "/v1/models"), ("POST", "/v1/chat/completions"),
    ("POST", "/api/feedback"), ("POST", "/api/rankings"), ("POST", "/api/demonstrations"),
    ("GET", "/api/conversations"), ("GET", "/api/conversations/{conversation_id}"),
}
EXPECTED_ADMIN = {("GET", "/api/adapters"), ("POST", "/api/adapters/{version}/activate"),
                  ("POST", "/api/align/run"), ("GET", "/api/align/rounds"), ("GET", "/api/align/rounds/{round_id}")}


def routes(app_server) -> set[tuple[str, str]]:
    schema = httpx.get(app_server.url + "/api/openapi.json").json()
    return {(method.upper(), path) for path, ops in schema["paths"].items() for method in ops}


def admin_routes(app_server) -> list[tuple[str, str]]:
    return sorted(routes(app_server) - USER_ROUTES)


def call(client: httpx.Client, method: str, path: str) -> httpx.Response:
    url = path.replace("{version}", "base").replace("{round_id}", "1")
    url = url.replace("{", "").replace("}", "")  # any other path parameter: a harmless literal
    return client.request(method, url, json={})


def test_the_admin_routes_are_known(app_server):
    assert EXPECTED_ADMIN <= set(admin_routes(app_server))


@pytest.mark.parametrize("who,status", [(("bob", USERS["bob"]), 403), (None, 401), (("bob", "wrong"), 401)])
def test_non_admins_are_refused_every_admin_route(app_server, alice, who, status):
    before_counts, before_rounds = app_server.counts(), alice.get("/api/align/rounds").json()["data"]
    with httpx.Client(base_url=app_server.url, auth=who, timeout=60) as client:
        answers = {(m, p): call(client, m, p) for m, p in admin_routes(app_server)}

    assert {route: r.status_code for route, r in answers.items()} == {route: status for route in answers}
    assert all(r.json()["error"]["message"].endswith(".") for r in answers.values())
    assert app_server.counts() == before_counts
    assert alice.get("/api/align/rounds").json()["data"] == before_rounds


def test_the_admin_reads_them(app_server, alice):
    adapters, rounds = alice.get("/api/adapters"), alice.get("/api/align/rounds")

    with app_server.db() as db:
        versions = [row[0] for row in db.execute("select version from adapters order by version desc")]
        active = db.execute("select version from adapters where status = 'active'").fetchone()
        round_ids = [row[0] for row in db.execute("select id from rounds order by id desc limit 100")]  # its page
    assert adapters.status_code == 200
    assert adapters.json()["active"] == (active[0] if active else None)
    assert [a["version"] for a in adapters.json()["data"]] == versions
    assert rounds.status_code == 200 and [r["id"] for r in rounds.json()["data"]] == round_ids
