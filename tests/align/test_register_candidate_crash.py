"""A round process killed between renaming its folder into adapters/<version>/ and committing the
row (the last two steps of register_candidate) leaves a folder and no row: the database is intact,
its round is reaped as dead, and the next candidate gets that version number in a fresh folder,
the orphan left untouched."""

import json
import sqlite3
import subprocess
import sys
import textwrap

from storage import FeedbackStore
from tests.align.test_register_candidate import METRICS, finished_round, register
from tests.conftest import REPO

KILLED_AFTER_RENAME = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    from align.round import register_candidate
    from storage import FeedbackStore
    from storage.process import current_process

    data_dir, metrics = Path(sys.argv[1]), json.loads(sys.argv[2])
    store = FeedbackStore.open(data_dir)
    claimed = store.round_lock.claim_round(trigger="cli", process=current_process())
    rename = Path.rename

    def rename_then_die(self, target):  # the kernel's SIGKILL, right after the folder moved
        rename(self, target)
        os._exit(9)

    Path.rename = rename_then_die
    register_candidate(store, data_dir / "adapters" / ".tmp-round", base_model="m", parent_version=None,
                       data_record={}, metrics=metrics, round_id=claimed.id)
""")


def test_a_kill_between_rename_and_commit_registers_nothing_and_reuses_no_folder(tmp_path):
    finished_round(tmp_path)
    died = subprocess.run([sys.executable, "-c", KILLED_AFTER_RENAME, str(tmp_path), json.dumps(METRICS)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert died.returncode == 9, died.stderr
    assert (tmp_path / "adapters" / "1" / "adapter_config.json").is_file()  # renamed, never committed

    with sqlite3.connect(tmp_path / "chat.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store = FeedbackStore.open(tmp_path)
    assert store.registry.adapters() == []
    [reaped] = store.round_lock.reap_dead_rounds()
    assert reaped.status == "failed" and reaped.adapter_version is None

    version = register(store, finished_round(tmp_path, ".tmp-next"), tmp_path)
    assert version == 1 and store.registry.adapter(version).path != str((tmp_path / "adapters" / "1").resolve())
    assert (tmp_path / "adapters" / "1" / "adapter_config.json").is_file()  # the orphan is kept
