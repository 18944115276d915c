"""The supervisor's tick forgets expired Idempotency-Keys: on its first tick (at start-up) and then
at most once an hour."""

import asyncio

from sqlite_utils import Database

from storage import FeedbackStore, StorageConfig
from tests.loop.round_fakes import Clock, sleeping_supervisor


def test_the_tick_sweeps_keys_at_start_up_then_hourly(tmp_path, monkeypatch):
    days, hours = Clock(), Clock()  # the store's clock (key ages) and the supervisor's (sweep times)
    store = FeedbackStore(Database(memory=True), config=StorageConfig(idempotency_days=1), clock=days)
    supervisor = sleeping_supervisor(store, tmp_path, monkeypatch, clock=hours)
    for key in ("a", "b"):
        store.idempotency.save_response(user="alice", key=key, fingerprint="f", status=201, body={})
        days.advance(days=2)

    asyncio.run(supervisor.tick())
    assert [store.idempotency.saved_response(user="alice", key=k) is None for k in "ab"] == [True, True]

    store.idempotency.save_response(user="alice", key="c", fingerprint="f", status=201, body={})
    days.advance(days=2)
    hours.advance(minutes=59)
    asyncio.run(supervisor.tick())
    assert store.idempotency.saved_response(user="alice", key="c") is not None  # swept 59 minutes ago

    hours.advance(minutes=1)
    asyncio.run(supervisor.tick())
    assert store.idempotency.saved_response(user="alice", key="c") is None
