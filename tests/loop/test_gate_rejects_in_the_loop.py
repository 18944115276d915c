"""Inside the running loop (RoundSupervisor.judge_candidates over a fake engine), a candidate the gate
finds worse than what serves is rejected: the active version keeps serving, and every reason is on the
candidate for the admin tab. Unit test of the loop's wiring; the gate's rules are tests/loop/test_gate.py."""

import asyncio
from types import SimpleNamespace

from loop.gate import GateConfig
from loop.rounds import RoundSupervisor
from tests.serving.test_adapter_manager import manager, store  # noqa: F401 (fixture)
from tests.serving.test_candidate_preload import passing_metrics
from tests.loop.test_judge_bad_candidate import candidate


def test_a_worse_candidate_is_rejected_and_the_active_version_keeps_serving(store, tmp_path):
    loop = RoundSupervisor(store=store, adapters=manager(store), data_dir=tmp_path, model="m",
                           schedule=SimpleNamespace(check_s=30), gate=GateConfig())
    serving = candidate(store, tmp_path, passing_metrics())
    asyncio.run(loop.judge_candidates())
    assert store.registry.active_adapter().version == loop.adapters.engine.active.adapter_version == serving

    worse = passing_metrics()
    worse["candidate"] = {**worse["candidate"], "mean_reward": -0.5}
    worse["reference"] = {**worse["reference"], "mean_reward": 0.25}
    worse.update(reference_version=serving, reward_gain=-0.75, reward_gain_interval=[-0.9, -0.6])
    rejected = candidate(store, tmp_path, worse)
    asyncio.run(loop.judge_candidates())

    assert store.registry.active_adapter().version == loop.adapters.engine.active.adapter_version == serving
    assert store.registry.adapter(rejected).status == "rejected"
    decision = store.registry.adapter(rejected).decision
    assert (decision["promote"], decision["by"]) == (False, "gate")
    assert decision["reasons"][0] == (f"Mean reward -0.500 vs +0.250 for v{serving}: gain -0.750, 95% interval "
                                      f"[-0.900, -0.600] over 32 prompts x 4 answers; its lower end is not above "
                                      f"+0.000, so the gain may be noise.")
    assert f"Evaluated against v{serving}, which is what serves now." in decision["reasons"]
