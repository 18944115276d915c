import sqlite3

import pytest

from storage import InvalidInput, NotFound


def test_versions_increase_and_activation_retires_the_previous_adapter(store):
    first = store.registry.register_adapter(path="adapters/1", base_model="qwen", metrics={"reward": 0.1})
    second = store.registry.register_adapter(path="adapters/2", base_model="qwen", parent_version=first,
                                             data={"pairs": 40})
    assert (first, second) == (1, 2)
    assert store.registry.active_adapter() is None

    store.registry.set_adapter_status(first, "active")
    store.registry.set_adapter_status(second, "active")

    assert [(a.version, a.status) for a in store.registry.adapters()] == [(1, "retired"), (2, "active")]
    active = store.registry.active_adapter()
    assert (active.parent_version, active.data) == (1, {"pairs": 40})
    assert active.activated_at == "2025-01-01T00:00:04.000+00:00"
    assert store.registry.adapter(1).metrics == {"reward": 0.1}


def test_a_failed_adapter_keeps_its_error(store):
    version = store.registry.register_adapter(path="adapters/1", base_model="qwen")
    store.registry.set_adapter_status(version, "failed", error="Loss was NaN.")
    failed = store.registry.adapter(version)
    assert (failed.status, failed.error) == ("failed", "Loss was NaN.")


def test_bad_adapter_requests_are_refused(store):
    with pytest.raises(NotFound, match="^Adapter version 9 does not exist.$"):
        store.registry.set_adapter_status(9, "active")
    with pytest.raises(NotFound, match="^Adapter version 9 does not exist.$"):
        store.registry.register_adapter(path="adapters/2", base_model="qwen", parent_version=9)
    version = store.registry.register_adapter(path="adapters/1", base_model="qwen")
    with pytest.raises(InvalidInput, match="^An adapter status must be one of candidate, active"):
        store.registry.set_adapter_status(version, "live")


def test_versions_are_never_deleted_so_never_reused(store, fresh_db):
    store.registry.register_adapter(path="adapters/1", base_model="qwen")
    with pytest.raises(sqlite3.IntegrityError, match="adapter versions are never deleted"):
        fresh_db["adapters"].delete(1)
    assert store.registry.register_adapter(path="adapters/2", base_model="qwen") == 2
