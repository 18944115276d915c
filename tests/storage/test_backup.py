"""`python -m storage backup` copies the database consistently while another process writes to it;
the copy passes integrity_check, opens with FeedbackStore and is owner-only. Bad arguments exit 2
with one sentence and write nothing."""

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

from storage import FeedbackStore

REPO = Path(__file__).resolve().parents[2]


def storage_cli(*args):
    return subprocess.run([sys.executable, "-m", "storage", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def keep_writing(data_dir, stop: threading.Event, written: list[int]):
    """Votes as fast as they commit, until told to stop."""
    with FeedbackStore.open(data_dir) as store:
        cid = store.create_conversation(user="alice")
        prompt = store.record_message(conversation_id=cid, user="alice", role="user", content="Hi")
        answer = store.record_message(conversation_id=cid, user="alice", role="assistant", content="Hello",
                                      parent_id=prompt, model="qwen")
        while not stop.is_set():
            # A new comment each time: the same vote again would add no row.
            written.append(store.record_vote(response_id=answer, user="alice", rating=1,
                                             comment=f"{len(written)} " + "x" * 500))


def test_backup_while_the_database_is_written(tmp_path):
    data_dir, stop, written = tmp_path / "data", threading.Event(), []
    FeedbackStore.open(data_dir).close()
    writer = threading.Thread(target=keep_writing, args=(data_dir, stop, written))
    writer.start()
    try:
        while len(written) < 200:  # the copy starts mid-burst
            threading.Event().wait(0.01)
        result = storage_cli("backup", "--data-dir", data_dir, "--out", tmp_path / "copies" / "chat-backup.db")
        during = len(written)
    finally:
        stop.set()
        writer.join()

    copy = tmp_path / "copies" / "chat-backup.db"
    assert result.returncode == 0, result.stderr
    assert f'"out": "{copy}"' in result.stdout
    with sqlite3.connect(copy) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
    with restore(copy, tmp_path / "restored") as store:
        votes = store.stats()["votes"]
    assert 200 <= votes <= during  # a snapshot from within the burst, whole
    assert stat.S_IMODE(os.stat(copy).st_mode) == 0o600
    assert sorted(p.name for p in copy.parent.iterdir()) == ["chat-backup.db"]


def restore(copy: Path, data_dir: Path) -> FeedbackStore:
    """The copy put back as a data dir's chat.db, and opened the way the app opens it."""
    data_dir.mkdir()
    shutil.copy(copy, data_dir / "chat.db")
    return FeedbackStore.open(data_dir)


def test_bad_arguments_exit_2_with_one_sentence(tmp_path):
    FeedbackStore.open(tmp_path / "data").close()
    (tmp_path / "taken.db").write_text("mine")

    no_db = storage_cli("backup", "--data-dir", tmp_path / "nowhere", "--out", tmp_path / "b.db")
    taken = storage_cli("backup", "--data-dir", tmp_path / "data", "--out", tmp_path / "taken.db")
    no_out = storage_cli("backup", "--data-dir", tmp_path / "data")

    assert (no_db.returncode, no_db.stdout) == (2, "")
    assert no_db.stderr == f"There is no database at {tmp_path / 'nowhere' / 'chat.db'}; check --data-dir.\n"
    assert (taken.returncode, taken.stdout) == (2, "")
    assert taken.stderr == (f"{tmp_path / 'taken.db'} already exists; a backup never overwrites a file, "
                            "so choose a new --out.\n")
    assert (tmp_path / "taken.db").read_text() == "mine"
    assert no_out.returncode == 2 and "the following arguments are required: --out" in no_out.stderr
    assert not (tmp_path / "b.db").exists() and not (tmp_path / "nowhere").exists()
