"""`python -m align run` with too little feedback says so on stderr, exits 2, registers nothing and
records the failed round; while another round holds the lock it is refused the same way."""

import subprocess
import sys

from storage.process import current_process
from storage.store import FeedbackStore

from tests.conftest import REPO


def align_run(data_dir, *extra):
    return subprocess.run([sys.executable, "-m", "align", "run", "--data-dir", str(data_dir), *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def test_run_with_too_little_data(tmp_path):
    FeedbackStore.open(tmp_path).close()
    result = align_run(tmp_path)
    assert result.returncode == 2
    assert "Too little feedback for a round: 0 preference pairs" in result.stderr
    store = FeedbackStore.open(tmp_path)
    assert store.registry.adapters() == []
    assert not list((tmp_path / "adapters").glob("*"))
    [failed] = store.round_lock.rounds()
    assert (failed.status, failed.trigger) == ("failed", "cli")
    assert failed.error.startswith("Too little feedback")
    assert store.round_lock.running_round() is None


def test_run_is_refused_while_another_round_holds_the_lock(tmp_path):
    store = FeedbackStore.open(tmp_path)
    held = store.round_lock.claim_round(trigger="admin", process=current_process())  # this test process is alive
    result = align_run(tmp_path)
    assert result.returncode == 2
    assert f"Round {held.id} is already running" in result.stderr
    assert [r.id for r in store.round_lock.rounds()] == [held.id]


def test_an_adopted_round_must_be_running(tmp_path):
    store = FeedbackStore.open(tmp_path)
    done = store.round_lock.claim_round(trigger="admin", process=current_process())
    store.round_lock.finish_round(done.id, error="stopped")
    result = align_run(tmp_path, "--round-id", str(done.id))
    assert result.returncode == 2
    assert f"Round {done.id} is failed, not running" in result.stderr
