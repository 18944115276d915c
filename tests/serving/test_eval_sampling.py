"""The serving engine samples a round's evaluation answers (serving.eval_sampling): n answers per prompt
with the token ids the round needs, from the base model, a registered version or the round's own
candidate folder (loaded for the call and unloaded after it); the same seed gives the same answers; a
folder outside the data dir's round folders and a caller without the round's secret are refused."""

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from common.eval_samples import ROUTE, TOKEN_HEADER
from serving.api import ApiError, install_error_handlers
from serving.eval_sampling import EvalSampler, EvalSamplesBody, build_eval_sampling_api, new_endpoint

PROMPTS = [[{"role": "user", "content": "What is the capital of France?"}],
           [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]]


class NoAdapters:
    async def prepare(self, version):
        raise AssertionError("no registered version is sampled here")


def sampler(engine, adapters_dir, adapters=None) -> EvalSampler:
    return EvalSampler(engine=engine, adapters=adapters or NoAdapters(), adapters_dir=adapters_dir,
                       default_max_tokens=24, max_tokens_limit=64)


def body(model: dict, **kw) -> EvalSamplesBody:
    return EvalSamplesBody.model_validate({"model": model, "prompts": PROMPTS, "n": 3, "seed": 7, **kw})


def test_base_model_answers_come_n_per_prompt_with_their_tokens(engine_runner, tmp_path):
    engine = engine_runner.engine
    reply = engine_runner.run(sampler(engine, tmp_path).sample(body({"version": None})))
    again = engine_runner.run(sampler(engine, tmp_path).sample(body({"version": None})))

    assert reply["max_tokens"] == 24  # the app's default answer length when the round names none
    assert [len(p["answers"]) for p in reply["prompts"]] == [3, 3]
    for prompt in reply["prompts"]:
        assert prompt["prompt_token_ids"]
        for answer in prompt["answers"]:
            assert 0 < len(answer["token_ids"]) <= 24 and answer["text"].strip()
    assert reply == again  # seeded: the reference and a rerun see the same samples
    texts = [a["text"] for a in reply["prompts"][1]["answers"]]
    assert len(set(texts)) > 1  # n distinct samples, not one answer n times


def test_a_candidate_folder_is_sampled_then_unloaded(engine_runner, random_adapter, tmp_path):
    engine = engine_runner.engine
    folder = random_adapter(tmp_path / "adapters" / ".tmp-abc")
    greedy = {"temperature": 0.01, "max_tokens": 8}  # near-greedy: the adapter's change shows in the first tokens
    base = engine_runner.run(sampler(engine, tmp_path / "adapters").sample(body({"version": None}, **greedy)))
    candidate = engine_runner.run(sampler(engine, tmp_path / "adapters").sample(
        body({"candidate_dir": folder}, **greedy)))

    assert candidate["model"] == "round-eval-abc"
    assert not engine.has_adapter("round-eval-abc")  # used once: unloaded after the call
    assert [a["token_ids"] for p in candidate["prompts"] for a in p["answers"]] != \
        [a["token_ids"] for p in base["prompts"] for a in p["answers"]]


@pytest.mark.parametrize("where", ["outside", "registered", "relative", "missing"])
def test_only_a_round_folder_of_this_data_dir_is_loaded(engine_runner, random_adapter, tmp_path, where):
    adapters = tmp_path / "adapters"
    adapters.mkdir()
    folder = {"outside": lambda: random_adapter(tmp_path / ".tmp-x"),
              "registered": lambda: random_adapter(adapters / "3"),
              "relative": lambda: "adapters/.tmp-x",
              "missing": lambda: str(adapters / ".tmp-gone")}[where]()
    with pytest.raises(ApiError, match="candidate_dir must be"):
        engine_runner.run(sampler(engine_runner.engine, adapters).sample(body({"candidate_dir": folder})))


def test_only_the_round_the_app_started_may_call(tmp_path):
    calls = []

    class Recorder:
        async def sample(self, body):
            calls.append(body)
            return {"model": "m", "max_tokens": 1, "prompts": []}

    endpoint = new_endpoint("0.0.0.0", 7860)
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(build_eval_sampling_api(sampler=Recorder(), endpoint=endpoint, max_request_bytes=100_000))
    payload = {"model": {"version": None}, "prompts": PROMPTS, "n": 2}

    async def post(headers, json=payload):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await client.post(ROUTE, json=json, headers=headers)

    assert endpoint.url == f"http://127.0.0.1:7860{ROUTE}"
    for headers in ({}, {TOKEN_HEADER: "guess"}, {TOKEN_HEADER: endpoint.token[:-1]}):
        refused = asyncio.run(post(headers))
        assert refused.status_code == 401 and "round" in refused.json()["error"]["message"]
    bad = asyncio.run(post({TOKEN_HEADER: endpoint.token}, json={**payload, "n": 0}))
    assert bad.status_code == 400 and "'n'" in bad.json()["error"]["message"]
    assert not calls  # nothing refused reached the engine
    assert asyncio.run(post({TOKEN_HEADER: endpoint.token})).status_code == 200
    assert len(calls) == 1
