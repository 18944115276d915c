"""Unit tests of AdapterManager over a fake engine (no vLLM): what serves after a restart (and the
fall-back when the active adapter's files are gone or the engine refuses them), refused activations
changing nothing, and retention. The fake's refusal is its own sentence; what the real engine says
to a damaged file is tested in test_engine_refuses_corrupt_adapter.py."""

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from serving.adapters import AdapterConfig, AdapterError, AdapterManager
from serving.backend import ActiveModel
from storage import FeedbackStore


class FakeEngine:
    """Stands in for serving.engine.Engine: refuses adapters whose weights file says 'corrupt'."""

    def __init__(self):
        self.active = ActiveModel(name="base", adapter_version=None)
        self.loaded: list[int] = []

    async def load_adapter(self, version, path):
        from pathlib import Path

        if version in self.loaded:  # as the real engine: a version already loaded is kept
            return
        if (Path(path) / "adapter_model.safetensors").read_text() == "corrupt":
            raise RuntimeError("FakeEngine refuses weights marked 'corrupt'")
        self.loaded.append(version)

    async def merge(self, version):
        pass

    def activate(self, version):
        self.active = ActiveModel(name="base" if version is None else f"adapter-v{version}", adapter_version=version)
        return self.active


class Clock:
    def __init__(self):
        self.now = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def __call__(self):
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def store(tmp_path):
    return FeedbackStore.open(tmp_path, clock=Clock())


def adapter(store, tmp_path, *, weights="weights") -> int:
    version = max((a.version for a in store.registry.adapters()), default=0) + 1
    path = tmp_path / "adapters" / str(version)
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text("{}")
    (path / "adapter_model.safetensors").write_text(weights)
    return store.registry.register_adapter(path=str(path), base_model="m")


def manager(store, retention=5):
    return AdapterManager(engine=FakeEngine(), store=store, cfg=AdapterConfig(retention=retention))


def run(coro):
    return asyncio.run(coro)


def test_the_active_version_is_served_again_after_a_restart(store, tmp_path):
    v1, v2 = adapter(store, tmp_path), adapter(store, tmp_path)
    first = manager(store)
    run(first.activate(v1, by="gate"))
    run(first.activate(v2, by="gate"))

    restarted = manager(store)
    assert run(restarted.restore()).adapter_version == v2
    assert restarted.engine.loaded == [v2, v1]  # v1 ahead of a rollback, which is then only a switch
    assert restarted.engine.active.adapter_version == v2


def test_a_broken_active_adapter_falls_back_to_the_one_before_it(store, tmp_path):
    v1, v2 = adapter(store, tmp_path), adapter(store, tmp_path)
    first = manager(store)
    run(first.activate(v1, by="gate"))
    run(first.activate(v2, by="gate"))
    (tmp_path / "adapters" / str(v2) / "adapter_model.safetensors").write_text("corrupt")

    assert run(manager(store).restore()).adapter_version == v1
    assert store.registry.adapter(v2).status == "failed"
    assert "FakeEngine refuses weights marked 'corrupt'" in store.registry.adapter(v2).error
    assert store.registry.active_adapter().version == v1


def test_missing_files_fall_back_to_the_base_model_and_say_why(store, tmp_path):
    v1 = adapter(store, tmp_path)
    run(manager(store).activate(v1, by="gate"))
    (tmp_path / "adapters" / str(v1) / "adapter_config.json").unlink()

    assert run(manager(store).restore()).adapter_version is None
    assert "adapter_config.json missing" in store.registry.adapter(v1).error
    assert store.registry.active_adapter() is None


def test_after_a_rollback_to_base_a_restart_serves_base(store, tmp_path):
    v1 = adapter(store, tmp_path)
    first = manager(store)
    run(first.activate(v1, by="gate"))
    run(first.activate(None, by="alice"))
    assert run(manager(store).restore()).adapter_version is None


def test_a_refused_activation_leaves_the_served_adapter_alone(store, tmp_path):
    good, bad = adapter(store, tmp_path), adapter(store, tmp_path, weights="corrupt")
    m = manager(store)
    run(m.activate(good, by="gate"))
    with pytest.raises(AdapterError, match="could not load adapter v2"):
        run(m.activate(bad, by="alice"))
    assert m.engine.active.adapter_version == good
    assert store.registry.active_adapter().version == good


def test_a_hand_promotion_over_the_gate_is_recorded(store, tmp_path):
    v1 = adapter(store, tmp_path)
    store.registry.set_adapter_decision(v1, promote=False, reasons=["Mean reward -0.1 vs 0.0."], by="gate")
    run(manager(store).activate(v1, by="alice"))
    decision = store.registry.adapter(v1).decision
    assert (decision["promote"], decision["by"]) == (True, "alice")
    assert decision["reasons"] == ["Promoted by hand by alice, overriding the gate.", "Mean reward -0.1 vs 0.0."]


def test_retention_keeps_the_newest_the_active_its_predecessor_and_undecided_candidates(store, tmp_path):
    versions = [adapter(store, tmp_path) for _ in range(7)]
    m = manager(store, retention=2)
    run(m.activate(versions[0], by="gate"))  # v1 then v2 served: v2 active, v1 its predecessor
    run(m.activate(versions[1], by="gate"))
    for v in versions[2:5]:
        store.registry.set_adapter_decision(v, promote=False, reasons=["worse"], by="gate")  # v3-v5 rejected
    # v6, v7: newest (and v7 not yet decided)
    pruned = m.prune()

    assert pruned == [3, 4, 5]
    assert all(not (tmp_path / "adapters" / str(v)).exists() for v in pruned)
    assert all((tmp_path / "adapters" / str(v)).exists() for v in (1, 2, 6, 7))
    with pytest.raises(AdapterError, match="deleted by retention"):
        run(m.activate(3, by="alice"))
    assert store.registry.adapter(3).status == "rejected"  # a pruned version is not 'failed', only gone
