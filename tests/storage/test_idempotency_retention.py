"""Saved responses to Idempotency-Keys are forgotten after StorageConfig.idempotency_days; 0 keeps
them all."""

from datetime import timedelta

import pytest
from sqlite_utils import Database

from storage import FeedbackStore, StorageConfig
from tests.storage.conftest import TickingClock


def saved(store, key):
    store.idempotency.save_response(user="alice", key=key, fingerprint="f", status=201, body={"id": 1})


@pytest.mark.parametrize("days, left", [(7, ["new"]), (0, ["old", "new"])])
def test_keys_older_than_the_limit_are_forgotten(days, left):
    clock = TickingClock()
    store = FeedbackStore(Database(memory=True), config=StorageConfig(idempotency_days=days), clock=clock)
    saved(store, "old")
    clock.now += timedelta(days=7)
    saved(store, "new")

    assert store.idempotency.forget_idempotency_keys() == 2 - len(left)
    assert [k for k in ("old", "new") if store.idempotency.saved_response(user="alice", key=k)] == left
