"""vLLM's runtime LoRA loading is never exposed: its routes do not exist here, and a chat request's
`model` cannot pick an adapter (only the served name or 'default'; the active version is chosen
by the admins)."""

import pytest

LORA_ROUTES = ["/v1/load_lora_adapter", "/v1/unload_lora_adapter"]


@pytest.mark.parametrize("path", LORA_ROUTES)
def test_runtime_lora_routes_do_not_exist(app_server, alice, path):
    before = app_server.counts()

    posted = alice.post(path, json={"lora_name": "mine", "lora_path": "/tmp"})
    got = alice.get(path)

    assert posted.status_code in (404, 405) and got.status_code in (404, 405)
    assert app_server.counts() == before


def test_openapi_lists_no_lora_route(app_server, alice):
    assert not [p for p in alice.get("/api/openapi.json").json()["paths"] if "lora" in p]


@pytest.mark.parametrize("model", ["adapter-v1", "adapter-v999", "mine", "/tmp/adapter", "SmolLM2-135M-Instruct:lora"])
def test_model_cannot_select_an_adapter(app_server, alice, model):
    before = app_server.counts()

    r = alice.post("/v1/chat/completions", json={"model": model, "max_tokens": 2,
                                                  "messages": [{"role": "user", "content": "Hi"}]})

    assert r.status_code == 404 and r.json()["error"]["type"] == "model_not_found"
    assert app_server.counts() == before
