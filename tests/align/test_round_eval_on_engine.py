"""With --eval-on-engine, a round the app started has the serving engine sample its evaluation answers (the
app put the route and its secret in the round's environment); without them, or without the flag (the
default), the round samples in its own process; and when the engine cannot sample (the app stopped, or
refused), the round says so and samples in its own process, so it still ends with a candidate the gate can
judge."""

from pathlib import Path
from types import SimpleNamespace

import pytest

import align.evaluate
from align.round import _evaluation_stage
from align.served_eval import ServedSampler, ServedSamplingError
from align.stage_configs import RoundConfig
from common.eval_samples import EVAL_TOKEN_ENV, EVAL_URL_ENV


def run_stage(monkeypatch, cfg: RoundConfig, *, engine_fails: bool = False) -> tuple[list, list[str]]:
    calls, lines = [], []

    def compare(policy, tokenizer, score, prompts, settings, **kw):
        calls.append((kw["engine"], kw["candidate_dir"], settings.served_max_tokens))
        if kw["engine"] is not None and engine_fails:
            raise ServedSamplingError("the app could not be reached at http://127.0.0.1:9/")
        return {"sampled_by": "serving engine" if kw["engine"] else "round process"}

    monkeypatch.setattr(align.evaluate, "compare", compare)
    result = SimpleNamespace(policy=SimpleNamespace(active_adapter="default"), tokenizer=None,
                             adapter_dir=Path("/data/adapters/.tmp-1"))
    timings = {}
    _evaluation_stage(result, SimpleNamespace(score=None), SimpleNamespace(eval_prompts=[[]] * 4), cfg, None,
                      False, timings, lambda line, **_: lines.append(line))
    assert "evaluation" in timings
    return calls, lines


@pytest.fixture
def started_by_the_app(monkeypatch):
    monkeypatch.setenv(EVAL_URL_ENV, "http://127.0.0.1:9/api/align/eval-samples")
    monkeypatch.setenv(EVAL_TOKEN_ENV, "secret")


def test_a_round_the_app_started_samples_on_the_engine(monkeypatch, started_by_the_app):
    calls, lines = run_stage(monkeypatch, RoundConfig(eval_on_engine=True, eval_engine_max_tokens=96))
    assert calls == [(ServedSampler(url="http://127.0.0.1:9/api/align/eval-samples", token="secret"),
                      "/data/adapters/.tmp-1", 96)]
    assert "sampled by the serving engine" in lines[0]


def test_without_the_app_or_when_told_not_to_the_round_samples_itself(monkeypatch, started_by_the_app):
    calls, lines = run_stage(monkeypatch, RoundConfig(eval_on_engine=False, eval_max_new_tokens=40))
    assert [engine for engine, *_ in calls] == [None] and "sampled here, 40 tokens each" in lines[0]
    calls, _ = run_stage(monkeypatch, RoundConfig())  # off by default (its cost: align.stage_configs)
    assert [engine for engine, *_ in calls] == [None]
    monkeypatch.delenv(EVAL_URL_ENV)
    calls, _ = run_stage(monkeypatch, RoundConfig(eval_on_engine=True))
    assert [engine for engine, *_ in calls] == [None]


def test_when_the_engine_cannot_sample_the_round_samples_itself_and_says_why(monkeypatch, started_by_the_app):
    calls, lines = run_stage(monkeypatch, RoundConfig(eval_on_engine=True), engine_fails=True)
    assert [engine is None for engine, *_ in calls] == [False, True]
    assert any("could not sample the evaluation answers (the app could not be reached" in line for line in lines)
