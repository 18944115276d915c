"""Generation requests over a user's --rate-limit are refused, through the API (429 with a sentence
and Retry-After) and through the UI (an error shown), and leave nothing in the database; feedback
stays open."""

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.e2e.conftest import GUARDED_USERS

HI = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}


def test_over_the_limit_is_429_then_a_ui_error_and_nothing_is_stored(guarded_app):
    carol = httpx.Client(base_url=guarded_app.url, auth=("carol", GUARDED_USERS["carol"]), timeout=120)
    answered = carol.post("/v1/chat/completions", json=HI)
    assert carol.post("/v1/chat/completions", json={**HI, "stream": True}).status_code == 200
    before = guarded_app.app.counts()

    refused = carol.post("/v1/chat/completions", json=HI)
    ui = Client(guarded_app.url, auth=("carol", GUARDED_USERS["carol"]), verbose=False)
    with pytest.raises(AppError, match="Too many requests") as send:
        ui.predict("Hi", api_name="/send")
    with pytest.raises(AppError, match="Too many requests"):
        ui.predict("Name a fruit.", 2, api_name="/compare")

    assert refused.status_code == 429
    assert refused.json()["error"] == {
        "message": f"Too many requests: the limit is 2 requests per hour per user. "
                   f"Try again in {refused.headers['retry-after']} s.",
        "type": "rate_limit_error", "code": 429}
    assert 1000 < int(refused.headers["retry-after"]) <= 1800  # half an hour refills one of two
    assert "Try again in" in str(send.value)
    assert guarded_app.app.counts() == before

    vote = carol.post("/api/feedback", json={"response_id": answered.json()["choices"][0]["response_id"],
                                             "rating": 1})
    assert vote.status_code == 201
