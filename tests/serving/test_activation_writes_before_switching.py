"""AdapterManager.activate writes the database before it switches the engine, and an engine that
refuses the switch leaves the database as it was: both agree on what serves."""

import asyncio
from dataclasses import asdict

import pytest

from serving.adapters import AdapterConfig, AdapterManager
from serving.backend import ActiveModel
from storage import FeedbackStore


class RecordingEngine:
    """Stands in for serving.engine.Engine: every adapter loads; `activate` is noted in `calls`
    (or refused when `refuse` is set)."""

    def __init__(self, calls: list, *, refuse: bool = False):
        self.active = ActiveModel(name="base", adapter_version=None)
        self.calls, self.refuse = calls, refuse

    async def load_adapter(self, version, path):
        pass

    async def merge(self, version):
        pass

    def activate(self, version):
        if self.refuse:
            raise KeyError(f"Adapter v{version} is not loaded.")
        self.calls.append(("engine.activate", version))
        self.active = ActiveModel(name="base" if version is None else f"adapter-v{version}", adapter_version=version)
        return self.active


def record_writes(store: FeedbackStore, calls: list) -> None:
    """Note the registry's writes that say what serves in `calls`, then make them."""
    set_status, deactivate = store.registry.set_adapter_status, store.registry.deactivate_adapters

    def set_adapter_status(version, status, error=None):
        calls.append(("store.registry.set_adapter_status", version))
        set_status(version, status, error)

    def deactivate_adapters():
        calls.append(("store.registry.deactivate_adapters", None))
        deactivate()

    store.registry.set_adapter_status, store.registry.deactivate_adapters = set_adapter_status, deactivate_adapters


@pytest.fixture
def calls():
    return []


@pytest.fixture
def store(tmp_path, calls):
    store = FeedbackStore.open(tmp_path)
    record_writes(store, calls)
    return store


def adapter(store, tmp_path) -> int:
    version = max((a.version for a in store.registry.adapters()), default=0) + 1
    path = tmp_path / "adapters" / str(version)
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text("{}")
    (path / "adapter_model.safetensors").write_text("weights")
    return store.registry.register_adapter(path=str(path), base_model="m")


def manager(store, engine):
    return AdapterManager(engine=engine, store=store, cfg=AdapterConfig())


def test_the_database_is_written_before_the_engine_switches(store, tmp_path, calls):
    v1 = adapter(store, tmp_path)
    m = manager(store, RecordingEngine(calls))
    asyncio.run(m.activate(v1, by="alice"))
    asyncio.run(m.activate(None, by="alice"))

    assert calls == [("store.registry.set_adapter_status", v1), ("engine.activate", v1),
                     ("store.registry.deactivate_adapters", None), ("engine.activate", None)]
    assert store.registry.active_adapter() is None


@pytest.mark.parametrize("to_base", [False, True])
def test_an_engine_that_refuses_the_switch_leaves_the_database_unchanged(store, tmp_path, calls, to_base):
    v1, v2 = adapter(store, tmp_path), adapter(store, tmp_path)
    asyncio.run(manager(store, RecordingEngine(calls)).activate(v1, by="gate"))
    before = [asdict(a) for a in store.registry.adapters()]

    refusing = manager(store, RecordingEngine(calls, refuse=True))
    refusing.engine.active = ActiveModel(name=f"adapter-v{v1}", adapter_version=v1)
    with pytest.raises(KeyError):
        asyncio.run(refusing.activate(None if to_base else v2, by="alice"))

    assert [asdict(a) for a in store.registry.adapters()] == before
    assert store.registry.active_adapter().version == v1 == refusing.engine.active.adapter_version
