"""With --api-keys, the API takes `Authorization: Bearer <key>` (so the openai client works with
api_key=...), rows are stored under the key's user, admins are still the --admin users, and HTTP
Basic keeps working."""

import httpx
import openai

from tests.e2e.conftest import GUARDED_USERS


def test_openai_client_with_a_key_stores_rows_under_its_user(guarded_app):
    oa = openai.OpenAI(base_url=guarded_app.url + "/v1", api_key=guarded_app.keys["bob"], timeout=120)
    reply = oa.chat.completions.create(model="default", max_tokens=4,
                                       messages=[{"role": "user", "content": "Say hi."}])
    response_id = reply.choices[0].model_extra["response_id"]

    bearer = {"Authorization": f"Bearer {guarded_app.keys['bob']}"}
    vote = httpx.post(guarded_app.url + "/api/feedback", headers=bearer, json={"response_id": response_id,
                                                                               "rating": 1})

    assert vote.status_code == 201
    with guarded_app.app.db() as db:
        answer = db.execute("select user from messages where id = ?", (response_id,)).fetchone()
        stored = db.execute("select user from votes where id = ?", (vote.json()["id"],)).fetchone()
    assert (answer["user"], stored["user"]) == ("bob", "bob")


def test_wrong_or_revoked_looking_keys_are_401(guarded_app):
    for header in ("Bearer sk-not-a-key", "Bearer", f"Bearer {guarded_app.keys['bob']}x",
                   f"Basic {guarded_app.keys['bob']}"):
        r = httpx.get(guarded_app.url + "/api/conversations", headers={"Authorization": header})
        assert r.status_code == 401 and "Bearer" in r.json()["error"]["message"], header


def test_admin_rights_follow_the_keys_user(guarded_app):
    def adapters(key):
        return httpx.get(guarded_app.url + "/api/adapters", headers={"Authorization": f"Bearer {key}"})

    assert adapters(guarded_app.keys["alice"]).status_code == 200
    assert adapters(guarded_app.keys["bob"]).status_code == 403


def test_basic_auth_still_works(guarded_app):
    r = httpx.get(guarded_app.url + "/api/conversations", auth=("carol", GUARDED_USERS["carol"]))
    with guarded_app.app.db() as db:
        carols = [row[0] for row in db.execute("select id from conversations where user = 'carol'")]

    assert r.status_code == 200 and sorted(c["id"] for c in r.json()["data"]) == sorted(carols)
