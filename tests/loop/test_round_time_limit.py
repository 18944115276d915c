"""A round the app started that runs longer than --align-max-minutes is stopped, with every process
it started, and recorded as failed with a sentence saying why; a round within the limit runs on."""

import asyncio

import pytest

from storage.store import FeedbackStore
from tests.loop.round_fakes import Clock, gone_within, running, sleeping_supervisor, wait_for_pids


@pytest.fixture
def store(tmp_path):
    with FeedbackStore.open(tmp_path) as store:
        yield store


def test_a_round_past_its_time_limit_is_stopped_and_failed(store, tmp_path, monkeypatch):
    clock = Clock()
    supervisor = sleeping_supervisor(store, tmp_path, monkeypatch, clock=clock, max_minutes=60)
    started = supervisor.start_round(trigger="admin")
    child, grandchild = wait_for_pids(tmp_path)
    try:
        clock.advance(minutes=59)
        asyncio.run(supervisor.tick())
        assert running(child) and store.round_lock.round(started.id).status == "running"

        clock.advance(minutes=2)
        asyncio.run(supervisor.tick())
    finally:
        asyncio.run(supervisor.stop())

    assert gone_within(child) and gone_within(grandchild)
    assert store.round_lock.round(started.id).status == "failed"
    assert store.round_lock.round(started.id).error == (
        "Stopped after running longer than the 60 minutes a round may take (--align-max-minutes).")
