"""Consistent copies of the live database, made with SQLite's online backup API.

Copying chat.db with `cp` while the app writes can catch a page half-updated or miss what still
sits in the -wal file. The backup API copies every page inside one read transaction, so the copy
is the database as of one commit, and (in WAL mode) the app's writers are never blocked by it.
"""

from __future__ import annotations

import os
import re
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from .config import db_path
from .errors import StoreError
from .permissions import private_dir, private_file
from .schema import schema_version

BACKUPS_DIR = "backups"  # DATA_DIR/backups/<UTC stamp>.db, written by the admin endpoint
BACKUP_NAME = re.compile(r"\d{8}T\d{6}\.\d{6}Z\.db")  # the stamp below: the only files retention deletes


def backup_database(data_dir: str | Path, out: str | Path, *, busy_timeout_s: float = 5.0) -> dict:
    """Copy data_dir/chat.db to `out` (a new file, 0600, one self-contained file with no -wal).

    The copy is written next to `out` first, checked with PRAGMA integrity_check and only then
    renamed into place, so `out` is either absent or a whole, sound database.
    """
    source, out = _check_source(data_dir), _check_out(Path(out))
    partial = out.with_name(out.name + ".partial")
    partial.unlink(missing_ok=True)  # left by a backup that was killed
    try:
        copy_pages(source, private_file(partial), busy_timeout_s=busy_timeout_s)
        version = check_copy(partial)
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return {"out": str(out), "bytes": out.stat().st_size, "schema_version": version}


def backup_into_data_dir(data_dir: str | Path, *, busy_timeout_s: float = 5.0, keep: int = 0) -> dict:
    """A backup named after the current UTC time in DATA_DIR/backups/ (the admin endpoint's); once it
    is written, only the newest `keep` such backups stay (0: all of them)."""
    folder = private_dir(Path(data_dir) / BACKUPS_DIR)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    result = backup_database(data_dir, folder / f"{stamp}.db", busy_timeout_s=busy_timeout_s)
    forget_old_backups(folder, keep=keep)
    return result


def forget_old_backups(folder: Path, *, keep: int) -> list[Path]:
    """Delete all but the newest `keep` backups in `folder` (0: none); returns the deleted. Only
    files named like backup_into_data_dir's are touched: a copy someone put there stays."""
    if keep <= 0:
        return []
    # The UTC stamp sorts in time order.
    backups = sorted(p for p in folder.iterdir() if p.is_file() and BACKUP_NAME.fullmatch(p.name))
    old = backups[:-keep]
    for path in old:
        path.unlink(missing_ok=True)
    return old


def copy_pages(source: Path, target: Path, *, busy_timeout_s: float) -> None:
    """Every page of `source` into `target` in one step (one read transaction: one consistent state)."""
    src = sqlite3.connect(source, timeout=busy_timeout_s)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst, pages=-1)
        # The copy keeps the source's WAL flag; a backup should be one file that opens anywhere.
        dst.execute("PRAGMA journal_mode = DELETE")
    finally:
        dst.close()
        src.close()


def check_copy(path: Path) -> int:
    """PRAGMA integrity_check on the copy; returns its schema version."""
    from sqlite_utils import Database

    conn = sqlite3.connect(path)
    try:
        result = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        if result != ["ok"]:
            raise StoreError(f"The backup copy failed SQLite's integrity check ({result[0]}); nothing was written.")
        return schema_version(Database(conn, execute_plugins=False))
    finally:
        conn.close()


def _check_source(data_dir: str | Path) -> Path:
    source = db_path(data_dir)
    if not source.is_file():
        raise StoreError(f"There is no database at {source}; check --data-dir.")
    return source


def _check_out(out: Path) -> Path:
    if out.exists():
        raise StoreError(f"{out} already exists; a backup never overwrites a file, so choose a new --out.")
    if out.name.endswith(("-wal", "-shm", "-journal")):
        raise StoreError(f"{out.name} looks like one of SQLite's own side files; name the backup e.g. chat-backup.db.")
    private_dir(out.parent)
    return out
