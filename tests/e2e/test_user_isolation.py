"""With --auth, a user never sees, rates, ranks or rewrites another user's conversations: not
through the HTTP API, nor through the UI's Gradio endpoints."""

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.conftest import USERS


def test_users_cannot_touch_each_others_rows(app_server, alice, bob):
    r = alice.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Secret plan"}],
                                                  "max_tokens": 4})
    conversation_id, response_id = r.json()["conversation_id"], r.json()["choices"][0]["response_id"]
    before = app_server.counts()

    assert bob.get(f"/api/conversations/{conversation_id}").status_code == 404
    assert bob.post("/api/feedback", json={"response_id": response_id, "rating": 1}).status_code == 404
    assert bob.post("/api/demonstrations", json={"response_id": response_id, "content": "x"}).status_code == 404
    assert conversation_id not in [c["id"] for c in bob.get("/api/conversations").json()["data"]]
    assert conversation_id in [c["id"] for c in alice.get("/api/conversations").json()["data"]]
    assert app_server.counts() == before
    with app_server.db() as db:
        users = {r[0] for r in db.execute("select distinct user from messages where conversation_id = ?",
                                          (conversation_id,))}
    assert users == {"alice"}


def test_gradio_endpoints_refuse_another_users_answers(app_server, alice):
    r = alice.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Secret plan"}],
                                                  "max_tokens": 4, "n": 2})
    a, b = [c["response_id"] for c in r.json()["choices"]]
    bob = Client(app_server.url, auth=("bob", USERS["bob"]), verbose=False)
    before = app_server.counts()

    for args, api_name in (((a, 1, "", ""), "/vote"), ((a, -1, "Wrong", "mine now"), "/vote"),
                           ((a, "A better answer."), "/rewrite"), (([a, b],), "/rank")):
        with pytest.raises(AppError, match=f"Response {a} does not exist"):
            bob.predict(*args, api_name=api_name)

    assert app_server.counts() == before
