"""The chat database's one connection, shared by the classes that own its tables (FeedbackStore,
AdapterRegistry, RoundLock, IdempotencyKeys): its lock, its clock, transactions, and the plain
SQL helpers they all write with. Owns no table itself."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from sqlite_utils import Database


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Tables:
    """One connection and the lock its threads share; every owner of a table writes through it, so one
    transaction() covers writes to any of them."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.db = db
        self.clock = clock
        # The server's threads share one connection. sqlite-utils wraps even reads in savepoints,
        # so reads take the lock too; re-entrant so transaction() can wrap many writes.
        self.lock = threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes into one commit: all of them land, or none if an error escapes the block.

        The outermost block takes the write lock up front (BEGIN IMMEDIATE), so a lock another
        process holds is waited for, up to busy_timeout_s. A plain BEGIN that reads before it
        writes, as most of ours do, gets 'database is locked' at once: SQLite does not wait there,
        because waiting could deadlock."""
        with self.lock:
            if self.db.conn.in_transaction:  # nested: a savepoint inside the outer block
                with self.db.atomic():
                    yield
                return
            self.db.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                self.db.conn.commit()
            except BaseException:
                self.db.conn.rollback()
                raise

    def now(self) -> str:
        return self.clock().astimezone(timezone.utc).isoformat(timespec="milliseconds")

    def rows(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        return list(self.db.query(sql, params))

    # sqlite-utils' Table.insert/update inspect the schema on every call, which made a
    # 1,795-pair import take ~8 s; these plain statements do the same job. Table and column
    # names always come from the storage modules, never from input.
    def insert(self, table: str, row: dict[str, Any]) -> int:
        columns = ", ".join(f'"{column}"' for column in row)
        marks = ", ".join("?" for _ in row)
        sql = f'INSERT INTO "{table}" ({columns}) VALUES ({marks})'
        return self.db.execute(sql, list(row.values())).lastrowid

    def update(self, table: str, row_id: int, changes: dict[str, Any], *, key: str = "id") -> None:
        assignments = ", ".join(f'"{column}" = ?' for column in changes)
        sql = f'UPDATE "{table}" SET {assignments} WHERE "{key}" = ?'
        self.db.execute(sql, [*changes.values(), row_id])
