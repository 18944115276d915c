"""Starting a round keeps only the newest --align-keep-logs round logs (by round id), and deletes
nothing in DATA_DIR/rounds/ that is not named like a round log."""

import asyncio

import pytest

from storage.process import current_process
from storage.store import FeedbackStore
from tests.loop.round_fakes import sleeping_supervisor

QUICK = "pass"  # a round that ends at once: only its log matters here


@pytest.fixture
def store(tmp_path):
    with FeedbackStore.open(tmp_path) as store:
        yield store


def earlier_rounds(store, tmp_path, n):
    (tmp_path / "rounds").mkdir()
    for _ in range(n):
        r = store.round_lock.claim_round(trigger="cli", process=current_process())
        store.round_lock.finish_round(r.id, error="An earlier round.")
        (tmp_path / "rounds" / f"{r.id}.log").write_text("log")


def test_only_the_newest_logs_stay(store, tmp_path, monkeypatch):
    earlier_rounds(store, tmp_path, 4)
    for name in ("notes.txt", "3.log.bak", "old.log"):
        (tmp_path / "rounds" / name).write_text("someone else's")
    supervisor = sleeping_supervisor(store, tmp_path, monkeypatch, script=QUICK, keep_logs=2)

    started = supervisor.start_round(trigger="admin")
    asyncio.run(supervisor.stop())

    assert started.id == 5
    assert sorted(p.name for p in (tmp_path / "rounds").iterdir()) == [
        "3.log.bak", "4.log", "5.log", "notes.txt", "old.log"]


def test_zero_keeps_every_log(store, tmp_path, monkeypatch):
    earlier_rounds(store, tmp_path, 3)
    supervisor = sleeping_supervisor(store, tmp_path, monkeypatch, script=QUICK, keep_logs=0)

    supervisor.start_round(trigger="admin")
    asyncio.run(supervisor.stop())

    assert sorted(p.name for p in (tmp_path / "rounds").iterdir()) == ["1.log", "2.log", "3.log", "4.log"]


def test_a_rounds_journal_goes_with_its_log(store, tmp_path, monkeypatch):
    earlier_rounds(store, tmp_path, 3)
    for round_id in (1, 2, 3):
        (tmp_path / "rounds" / f"{round_id}.steps.jsonl").write_text("{}\n")
    supervisor = sleeping_supervisor(store, tmp_path, monkeypatch, script=QUICK, keep_logs=2)

    supervisor.start_round(trigger="admin")
    asyncio.run(supervisor.stop())

    assert sorted(p.name for p in (tmp_path / "rounds").iterdir()) == [
        "3.log", "3.steps.jsonl", "4.log"]
