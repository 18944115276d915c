"""Nothing a user typed and no credential reaches the app's log at INFO: chats (plain, streamed,
refused as too long), feedback with a comment, and a failed login leave no prompt text, answer
comment, password or Authorization header in it."""

import base64
import uuid

import httpx

from tests.conftest import USERS


def test_prompts_and_passwords_stay_out_of_the_log(app_server, alice):
    marker = uuid.uuid4().hex  # appears in every prompt and comment sent below, and nowhere else
    prompt = f"My private code word is {marker}. Say it back."
    chat = {"messages": [{"role": "user", "content": prompt}], "max_tokens": 4}

    answered = alice.post("/v1/chat/completions", json=chat)
    with alice.stream("POST", "/v1/chat/completions", json={**chat, "stream": True}) as streamed:
        streamed.read()
    too_long = alice.post("/v1/chat/completions",
                          json={"messages": [{"role": "user", "content": f"{marker} " * 3000}], "max_tokens": 4})
    vote = alice.post("/api/feedback", json={"response_id": answered.json()["choices"][0]["response_id"],
                                             "rating": -1, "comment": f"it leaked {marker}"})
    wrong = httpx.post(app_server.url + "/v1/chat/completions", json=chat, auth=("alice", f"guess-{marker}"))

    assert (answered.status_code, streamed.status_code, too_long.status_code, vote.status_code,
            wrong.status_code) == (200, 200, 400, 201, 401)
    log = app_server.log()
    assert marker not in log
    for user, password in USERS.items():
        assert password not in log
        assert base64.b64encode(f"{user}:{password}".encode()).decode() not in log
