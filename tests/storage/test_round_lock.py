"""The one-round-at-a-time lock in the DB: claimed, refused while held, released by finishing, and
recovered from a holder that died (a real SIGKILLed process)."""

import os
import signal
import subprocess
import sys
import time

import pytest

from storage import Conflict, FeedbackStore
from storage.process import ProcessIdentity, current_process, is_alive

ME = current_process()


def test_a_second_claim_is_refused_while_the_first_round_runs(store):
    first = store.round_lock.claim_round(trigger="admin", process=ME, requested_by="alice")
    assert (first.status, first.trigger, first.pid) == ("running", "admin", os.getpid())

    with pytest.raises(Conflict, match=f"Round {first.id} is already running"):
        store.round_lock.claim_round(trigger="schedule", process=ME)
    assert store.stats()["rounds"] == 1


def test_finishing_releases_the_lock_and_records_the_outcome(store):
    version = store.registry.register_adapter(path="adapters/1", base_model="m")
    first = store.round_lock.claim_round(trigger="cli", process=ME)
    store.round_lock.update_round_progress(first.id, "PPO step 3/8")
    done = store.round_lock.finish_round(first.id, adapter_version=version)
    assert (done.status, done.adapter_version, done.progress, done.error) == ("succeeded", 1, "PPO step 3/8", None)

    second = store.round_lock.claim_round(trigger="cli", process=ME)
    failed = store.round_lock.finish_round(second.id, error="Too little feedback.")
    assert (failed.status, failed.error) == ("failed", "Too little feedback.")
    assert [r.id for r in store.round_lock.rounds()] == [second.id, first.id]
    with pytest.raises(Conflict):
        store.round_lock.finish_round(second.id)


def test_a_round_whose_process_is_gone_is_marked_failed_on_the_next_claim(store):
    dead = store.round_lock.claim_round(trigger="schedule", process=ME)
    store.round_lock.update_round_progress(dead.id, "Reward model on 40 pairs ...")

    fresh = store.round_lock.claim_round(trigger="admin", process=ME, alive=lambda r: False)

    reaped = store.round_lock.round(dead.id)
    assert reaped.status == "failed"
    assert "killed or crashed" in reaped.error and "Reward model on 40 pairs" in reaped.error
    assert store.round_lock.running_round().id == fresh.id


def test_the_lock_of_a_sigkilled_process_is_released(tmp_path):
    """A real process claims the lock and is killed with SIGKILL: nothing runs its clean-up."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from storage import FeedbackStore; from storage.process import current_process\n"
        f"s = FeedbackStore.open({str(tmp_path)!r})\n"
        "s.round_lock.claim_round(trigger='cli', process=current_process())\n"
        "print('claimed', flush=True); time.sleep(600)"
    )], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        assert holder.stdout.readline().strip() == "claimed"
        store = FeedbackStore.open(tmp_path)
        held = store.round_lock.running_round()
        assert held.pid == holder.pid and is_alive(held.process)
        with pytest.raises(Conflict):
            store.round_lock.claim_round(trigger="admin", process=ME)

        holder.send_signal(signal.SIGKILL)
        time.sleep(0.2)  # not reaped by us yet: a zombie, which must count as dead
        assert not is_alive(held.process)
        mine = store.round_lock.claim_round(trigger="admin", process=ME)
        assert store.round_lock.round(held.id).status == "failed"
        assert store.round_lock.running_round().id == mine.id
    finally:
        holder.kill()
        holder.wait()


def test_a_reused_pid_is_not_the_process_that_held_the_lock():
    impostor = ProcessIdentity(host=ME.host, pid=ME.pid, start="1")  # same pid, another start time
    assert is_alive(ME) and not is_alive(impostor)


def test_a_remote_holder_is_alive_until_it_goes_silent(store):
    remote = ProcessIdentity(host="trainer-gpu-1", pid=123, start="99")
    assert not is_alive(remote, last_seen=None)
    from datetime import datetime, timedelta, timezone

    recent = (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat()
    old = (datetime.now(timezone.utc) - timedelta(hours=2)).isoformat()
    assert is_alive(remote, last_seen=recent, stale_after_s=3600)
    assert not is_alive(remote, last_seen=old, stale_after_s=3600)


def test_only_one_row_can_be_running_even_without_the_check(store):
    store.round_lock.claim_round(trigger="cli", process=ME)
    import sqlite3

    with pytest.raises(sqlite3.IntegrityError):
        store.db.execute("INSERT INTO rounds (status, trigger, started_at) VALUES ('running', 'cli', 'x')")
