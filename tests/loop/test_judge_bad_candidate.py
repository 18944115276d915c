"""A candidate whose metrics the gate cannot read is rejected with the reason, and the loop goes on to
the candidates behind it (it used to raise on every tick, so no later candidate was ever judged)."""

import asyncio
from types import SimpleNamespace

from loop import gate
from loop.gate import GateConfig
from loop.rounds import RoundSupervisor
from tests.serving.test_adapter_manager import manager, store  # noqa: F401 (fixture)
from tests.serving.test_candidate_preload import passing_metrics


def candidate(store, tmp_path, metrics) -> int:
    path = tmp_path / "adapters" / str(len(store.registry.adapters()) + 1)
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text("{}")
    (path / "adapter_model.safetensors").write_text("weights")
    return store.registry.register_adapter(path=str(path), base_model="m", metrics=metrics)


def judge(store, tmp_path):
    loop = RoundSupervisor(store=store, adapters=manager(store), data_dir=tmp_path, model="m",
                           schedule=SimpleNamespace(check_s=30), gate=GateConfig())
    asyncio.run(loop.judge_candidates())


def test_a_malformed_candidate_is_rejected_and_the_next_one_is_judged(store, tmp_path):
    good = passing_metrics()
    bad = candidate(store, tmp_path, {**good, "reference": {**good["reference"], "degenerate_fraction": "0.1"}})
    later = candidate(store, tmp_path, good)

    judge(store, tmp_path)

    assert store.registry.adapter(bad).status == "rejected"
    assert store.registry.adapter(bad).decision["reasons"] == [
        "The reference's degenerate_fraction is '0.1', not a number."]
    assert (store.registry.adapter(later).status, store.registry.adapter(later).decision["promote"]) == ("active", True)


def test_a_candidate_whose_judging_raises_is_rejected_with_the_error(store, tmp_path, monkeypatch):
    first, second = candidate(store, tmp_path, passing_metrics()), candidate(store, tmp_path, passing_metrics())
    verdicts = iter([ZeroDivisionError("division by zero"), None])

    def flaky_decide(metrics, *, active_version, cfg):
        error = next(verdicts)
        if error:
            raise error
        return gate.decide(metrics, active_version=active_version, cfg=cfg)

    monkeypatch.setattr("loop.rounds.decide", flaky_decide)
    judge(store, tmp_path)

    assert store.registry.adapter(first).decision["reasons"] == \
        ["The gate could not judge this candidate: ZeroDivisionError: division by zero"]
    assert store.registry.adapter(second).status == "active"
