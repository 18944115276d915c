"""A chat request for the prompt's log-probabilities (prompt_logprobs, or echo with logprobs) is a JSON 400
with a sentence and stores nothing: on vLLM's CPU LoRA path one such request in a batch with any LoRA
request (every request once an adapter is merged) killed the engine for every user. The answer's own
logprobs are still served."""

import pytest

ASK = {"model": "default", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 4}


@pytest.mark.parametrize("extra", [{"prompt_logprobs": 0}, {"prompt_logprobs": 2},
                                   {"echo": True, "logprobs": True, "top_logprobs": 1}])
def test_prompt_logprobs_are_refused(app_server, alice, extra):
    before = app_server.counts()
    refused = alice.post("/v1/chat/completions", json={**ASK, **extra})
    assert refused.status_code == 400 and "prompt" in refused.json()["error"]["message"]
    assert app_server.counts() == before


def test_answer_logprobs_are_still_served(alice):
    reply = alice.post("/v1/chat/completions", json={**ASK, "logprobs": True, "top_logprobs": 1})
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["logprobs"]["content"]
