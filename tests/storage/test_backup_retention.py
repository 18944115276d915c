"""Backups made into DATA_DIR/backups/ keep only the newest --keep-backups of them, deleted only
after a new backup succeeded; files not named like those backups are never touched."""

import pytest

from storage.backup import backup_into_data_dir, forget_old_backups
from storage.store import FeedbackStore


@pytest.fixture
def data_dir(tmp_path):
    FeedbackStore.open(tmp_path).close()
    return tmp_path


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_only_the_newest_backups_stay(data_dir):
    made = [backup_into_data_dir(data_dir, keep=2)["out"] for _ in range(4)]
    folder = data_dir / "backups"
    assert [str(folder / n) for n in names(folder)] == made[2:]


def test_files_not_named_like_a_backup_stay(data_dir):
    folder = data_dir / "backups"
    folder.mkdir()
    theirs = ["chat-backup.db", "20250101T000000.000000Z.db.partial", "mine.txt", "20250101T000000Z.db"]
    for name in theirs:
        (folder / name).write_text("not ours")
    (folder / "20250101T000000.000000Z.db").write_text("an old backup of ours")

    kept = backup_into_data_dir(data_dir, keep=1)

    assert names(folder) == sorted([*theirs, kept["out"].rsplit("/", 1)[1]])


def test_zero_keeps_every_backup(data_dir):
    for _ in range(3):
        backup_into_data_dir(data_dir, keep=0)
    assert forget_old_backups(data_dir / "backups", keep=0) == []
    assert len(names(data_dir / "backups")) == 3
