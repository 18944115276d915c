"""With --api-keys, the API takes `Authorization: Bearer <key>` (so the openai client works with
api_key=...), rows are stored under the key's user, admins are still the --admin users, and HTTP
Basic keeps working."""

import httpx
import openai

from tests.conftest import USERS


def test_openai_client_with_a_key_stores_rows_under_its_user(app_server):
    oa = openai.OpenAI(base_url=app_server.url + "/v1", api_key=app_server.keys["bob"], timeout=120)
    reply = oa.chat.completions.create(model="default", max_tokens=4,
                                       messages=[{"role": "user", "content": "Say hi."}])
    response_id = reply.choices[0].model_extra["response_id"]

    bearer = {"Authorization": f"Bearer {app_server.keys['bob']}"}
    vote = httpx.post(app_server.url + "/api/feedback", headers=bearer, json={"response_id": response_id,
                                                                               "rating": 1})

    assert vote.status_code == 201
    with app_server.db() as db:
        answer = db.execute("select user from messages where id = ?", (response_id,)).fetchone()
        stored = db.execute("select user from votes where id = ?", (vote.json()["id"],)).fetchone()
    assert (answer["user"], stored["user"]) == ("bob", "bob")


def test_wrong_or_revoked_looking_keys_are_401(app_server):
    for header in ("Bearer sk-not-a-key", "Bearer", f"Bearer {app_server.keys['bob']}x",
                   f"Basic {app_server.keys['bob']}"):
        r = httpx.get(app_server.url + "/api/conversations", headers={"Authorization": header})
        assert r.status_code == 401 and "Bearer" in r.json()["error"]["message"], header


def test_admin_rights_follow_the_keys_user(app_server):
    def adapters(key):
        return httpx.get(app_server.url + "/api/adapters", headers={"Authorization": f"Bearer {key}"})

    assert adapters(app_server.keys["alice"]).status_code == 200
    assert adapters(app_server.keys["bob"]).status_code == 403


def test_basic_auth_still_works(app_server):
    r = httpx.get(app_server.url + "/api/conversations", auth=("bob", USERS["bob"]))
    with app_server.db() as db:
        bobs = [row[0] for row in db.execute("select id from conversations where user = 'bob'")]

    assert r.status_code == 200 and sorted(c["id"] for c in r.json()["data"]) == sorted(bobs)
