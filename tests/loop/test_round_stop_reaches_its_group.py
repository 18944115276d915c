"""Stopping a round (the app shutting down) stops every process the round started, not just the
round process: it runs in a process group of its own, at the configured niceness."""

import asyncio
import os

import pytest

from storage.store import FeedbackStore
from tests.loop.round_fakes import gone_within, running, sleeping_supervisor, wait_for_pids


@pytest.fixture
def store(tmp_path):
    with FeedbackStore.open(tmp_path) as store:
        yield store


def test_stop_kills_the_rounds_grandchild_too(store, tmp_path, monkeypatch):
    supervisor = sleeping_supervisor(store, tmp_path, monkeypatch, nice=5)
    started = supervisor.start_round(trigger="admin")
    child, grandchild = wait_for_pids(tmp_path)

    assert os.getpgid(child) == child != os.getpgid(0)  # a group of its own
    assert os.getpriority(os.PRIO_PROCESS, child) == os.getpriority(os.PRIO_PROCESS, 0) + 5
    assert running(grandchild)
    asyncio.run(supervisor.stop())

    assert gone_within(child) and gone_within(grandchild)
    assert store.round_lock.round(started.id).status == "failed"
    assert store.round_lock.round(started.id).error == "Stopped because the app shut down."
