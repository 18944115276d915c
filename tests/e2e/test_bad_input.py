"""Every endpoint answers bad input with a JSON 4xx carrying a sentence, and writes nothing."""

import pytest


def answered(alice, n=2):
    r = alice.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}],
                                                  "max_tokens": 4, "n": n})
    return [c["response_id"] for c in r.json()["choices"]]


BAD_CHAT = [
    ({"messages": []}, 400),
    ({"messages": [{"role": "user", "content": "   "}]}, 400),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, 400),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}, 400),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 9}, 400),
    ({"messages": [{"role": "user", "content": "hi"}], "model": "gpt-17"}, 404),
    ({"messages": [{"role": "user", "content": "hi " * 5000}]}, 400),  # beyond max_model_len
    ({"messages": "hello"}, 400),
    ({"nothing": True}, 400),
]


@pytest.mark.parametrize("body,status", BAD_CHAT)
def test_bad_chat_requests(app_server, alice, body, status):
    before = app_server.counts()
    r = alice.post("/v1/chat/completions", json=body)
    assert r.status_code == status
    assert r.json()["error"]["message"].endswith(".")
    assert app_server.counts() == before


def test_bad_feedback_rankings_demonstrations(app_server, alice, bob):
    a, b = answered(alice)
    other_prompt = answered(alice, n=1)[0]
    bobs = answered(bob, n=1)[0]
    bad = [
        ("/api/feedback", {"response_id": a, "rating": 2}, 400),
        ("/api/feedback", {"response_id": a}, 400),
        ("/api/feedback", {"response_id": "x", "rating": 1}, 400),
        ("/api/feedback", {"response_id": 999999, "rating": 1}, 404),
        ("/api/feedback", {"response_id": bobs, "rating": 1}, 404),  # foreign id looks unknown
        ("/api/feedback", {"response_id": a, "rating": 1, "reason": "x" * 10000}, 400),
        ("/api/feedback", {"response_id": a, "rating": 1, "extra": 1}, 400),
        ("/api/rankings", {"response_ids": [a]}, 400),
        ("/api/rankings", {"response_ids": [a, a]}, 400),
        ("/api/rankings", {"response_ids": [a, other_prompt]}, 400),  # answers to different prompts
        ("/api/rankings", {"response_ids": [a, b, 999999]}, 404),
        ("/api/rankings", {"response_ids": [a, bobs]}, 404),
        ("/api/rankings", {"response_ids": "1,2"}, 400),
        ("/api/demonstrations", {"response_id": a, "content": ""}, 400),
        ("/api/demonstrations", {"response_id": a, "content": "  "}, 400),
        ("/api/demonstrations", {"response_id": bobs, "content": "better"}, 404),
        ("/api/demonstrations", {"response_id": a, "content": "x" * 200_000}, 400),
    ]
    before = app_server.counts()
    for path, body, status in bad:
        r = alice.post(path, json=body)
        assert r.status_code == status, (path, body, r.text)
        assert r.json()["error"]["message"].endswith("."), r.text
    for path in ("/api/feedback", "/api/rankings", "/api/demonstrations", "/v1/chat/completions"):
        r = alice.post(path, content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
        r = alice.post(path, content=b"x" * 2_000_000, headers={"content-type": "application/json"})
        assert r.status_code == 413
    assert alice.get("/api/conversations/abc").status_code == 404
    assert alice.get("/api/conversations/999999").status_code == 404
    assert app_server.counts() == before


def test_no_credentials_is_refused(app_server):
    import httpx

    for method, path in (("post", "/v1/chat/completions"), ("post", "/api/feedback"), ("get", "/v1/models"),
                         ("get", "/api/conversations/1")):
        r = getattr(httpx, method)(app_server.url + path, **({"json": {}} if method == "post" else {}))
        assert r.status_code == 401 and r.json()["error"]["message"]
    r = httpx.get(app_server.url + "/v1/models", auth=("alice", "wrong"))
    assert r.status_code == 401
