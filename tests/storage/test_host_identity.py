"""A host is its hostname and its machine id: a remote trainer on a machine that shares the app's
hostname is judged by how long it has been silent, never by looking its pid up among ours."""

import subprocess
import sys
from datetime import datetime, timezone

import pytest

from storage import Conflict, FeedbackStore, process
from storage.process import current_process, is_alive


def a_dead_pid() -> int:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    return finished.pid


def test_a_worker_with_our_hostname_on_another_machine_is_not_judged_by_our_pids(tmp_path, monkeypatch):
    monkeypatch.setattr(process, "machine_id", lambda: "another-machine")
    remote = current_process(a_dead_pid())  # what the worker on the other machine sends
    monkeypatch.undo()
    assert remote.host.split("@")[0] == current_process().host.split("@")[0]
    assert remote.host != current_process().host

    now = datetime.now(timezone.utc).isoformat()
    assert is_alive(remote, last_seen=now)  # its pid is dead here, but it does not run here
    assert not is_alive(remote, last_seen="2020-01-01T00:00:00+00:00")  # silent for years

    store = FeedbackStore.open(tmp_path)
    held = store.round_lock.claim_round(trigger="worker", process=remote)
    with pytest.raises(Conflict, match=f"Round {held.id} is already running"):
        store.round_lock.claim_round(trigger="cli", process=current_process())


def test_our_own_dead_process_is_still_seen_dead():
    assert not is_alive(current_process(a_dead_pid()), last_seen=datetime.now(timezone.utc).isoformat())
