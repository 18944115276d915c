"""Unit tests of the loop's order over a fake engine (no vLLM): a candidate is handed to the engine's
load when the loop first sees it, before the gate decides, so the promotion that follows is only the
switch (no load on the promotion path), and a candidate whose files the engine refuses is marked
failed there, before anyone can promote it. The real engine's load and refusal are tested in
test_engine_lora.py and test_engine_refuses_corrupt_adapter.py."""

import asyncio
from types import SimpleNamespace

from loop.gate import GateConfig
from loop.rounds import RoundSupervisor
from tests.serving.test_adapter_manager import adapter, manager, run, store  # noqa: F401 (fixture)


def passing_metrics() -> dict:
    """What align/round.py stores for a candidate that beats the base model on every count."""
    judged = {"mean_reward": 1.0, "kl_to_base": 0.1, "degenerate_fraction": 0.0}
    return {"candidate": judged, "reference": {**judged, "mean_reward": 0.0}, "reference_version": None,
            "reward_gain": 1.0, "reward_gain_interval": [0.8, 1.2], "interval_confidence": 0.95, "eval_prompts": 32,
            "answers_per_prompt": 4, "rm_accuracy": 0.8, "rm_held_out_pairs": 50}


def test_the_loop_loads_a_candidate_before_the_gate_promotes_it(store, tmp_path):
    path = tmp_path / "adapters" / "1"
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text("{}")
    (path / "adapter_model.safetensors").write_text("weights")
    v = store.registry.register_adapter(path=str(path), base_model="m", metrics=passing_metrics())
    m = manager(store)
    events = []
    load, switch = m.engine.load_adapter, m.engine.activate

    async def logged_load(version, path):
        events.append(("load", version, store.registry.adapter(version).decision))
        await load(version, path)

    def logged_switch(version):
        events.append(("switch", version))
        return switch(version)

    m.engine.load_adapter, m.engine.activate = logged_load, logged_switch
    loop = RoundSupervisor(store=store, adapters=m, data_dir=tmp_path, model="m",
                           schedule=SimpleNamespace(check_s=30), gate=GateConfig())
    asyncio.run(loop.judge_candidates())
    assert events[0] == ("load", v, None)  # loaded while undecided
    assert events[-1] == ("switch", v)
    assert store.registry.adapter(v).decision["promote"] is True
    assert m.engine.active.adapter_version == v


def test_prepare_loads_without_switching_and_activate_then_loads_nothing(store, tmp_path):
    v = adapter(store, tmp_path)
    m = manager(store)
    run(m.prepare(v))
    assert m.engine.loaded == [v]
    assert m.engine.active.adapter_version is None  # still serving the base model
    assert store.registry.adapter(v).status == "candidate"
    loads = []
    original = m.engine.load_adapter

    async def counting_load(version, path):
        loads.append(version)
        await original(version, path)

    m.engine.load_adapter = counting_load
    run(m.activate(v, by="gate"))
    assert m.engine.active.adapter_version == v
    assert m.engine.loaded == [v]  # the promotion loaded nothing new


def test_preparing_a_corrupt_candidate_marks_it_failed_and_serving_keeps_its_adapter(store, tmp_path):
    good, bad = adapter(store, tmp_path), adapter(store, tmp_path, weights="corrupt")
    m = manager(store)
    run(m.activate(good, by="gate"))
    try:
        run(m.prepare(bad))
    except Exception as e:
        assert "could not load adapter v2" in str(e)
    else:
        raise AssertionError("a corrupt candidate was prepared")
    assert store.registry.adapter(bad).status == "failed"
    assert "FakeEngine refuses weights marked 'corrupt'" in store.registry.adapter(bad).error
    assert m.engine.active.adapter_version == good
