"""Generation requests over a user's --rate-limit are refused, through the API (429 with a sentence
and Retry-After) and through the UI (an error shown), and leave nothing in the database; feedback
stays open."""

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from bench.common import AppProcess

HI = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
CAROL = ("carol", "carol-pw")
RATE_LIMIT = "2/hour"  # small enough that the test reaches it, slow enough that it never refills mid-test


@pytest.fixture
def rate_limited_app(model_path, tmp_path):
    """app.py with --rate-limit 2/hour per user: a flag the shared `app_server` must not have."""
    app = AppProcess(data_dir=tmp_path, model_path=model_path,
                     extra=["--auth", ":".join(CAROL), "--rate-limit", RATE_LIMIT, "--max-tokens", "8",
                            "--max-tokens-limit", "16"])
    try:
        app.wait_ready()
        yield app
    finally:
        stopped = app.stop()
    # The test's UI client keeps Gradio's heartbeat stream open: the app must still stop on SIGTERM
    # (--shutdown-timeout-s), not wait for that connection until it is killed.
    assert stopped, "app.py did not stop on SIGTERM with a UI client connected"


def test_over_the_limit_is_429_then_a_ui_error_and_nothing_is_stored(rate_limited_app):
    app = rate_limited_app
    carol = httpx.Client(base_url=app.url, auth=CAROL, timeout=120)
    answered = carol.post("/v1/chat/completions", json=HI)
    assert carol.post("/v1/chat/completions", json={**HI, "stream": True}).status_code == 200
    before = app.counts()

    refused = carol.post("/v1/chat/completions", json=HI)
    ui = Client(app.url, auth=CAROL, verbose=False)
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
    assert app.counts() == before

    vote = carol.post("/api/feedback", json={"response_id": answered.json()["choices"][0]["response_id"],
                                             "rating": 1})
    assert vote.status_code == 201
