"""The rounds table: one row per alignment round, and the one-round-at-a-time lock it holds (the row
with status 'running'). RoundLock owns that table and nothing else; it writes through the chat
database's shared connection (storage.tables), so a FeedbackStore.transaction() covers it too."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .checks import check_choice
from .errors import Conflict, NotFound
from .process import ProcessIdentity, is_alive
from .records import Round
from .tables import Tables

ROUND_STATUSES = ("running", "succeeded", "failed")
ROUND_TRIGGERS = ("schedule", "admin", "cli", "worker")


class RoundLock:
    """Owns the rounds table: claiming, adopting and releasing the lock, a round's progress and log."""

    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def claim_round(
        self,
        *,
        trigger: str,
        process: ProcessIdentity,
        requested_by: str | None = None,
        log_path: str | None = None,
        alive: Callable[[Round], bool] | None = None,
    ) -> Round:
        """Take the one-round-at-a-time lock: a new 'running' round held by `process`.

        A running round whose process is gone (killed, crashed, its machine lost) is marked
        failed first; a live one makes this raise Conflict.
        """
        check_choice(trigger, ROUND_TRIGGERS, "A round trigger")
        with self._tables.transaction():
            self.reap_dead_rounds(alive=alive)
            running = self.running_round()
            if running is not None:
                raise Conflict(
                    f"Round {running.id} is already running (started {running.started_at}, {running.trigger}, "
                    f"pid {running.pid} on {running.host}); one round runs at a time."
                )
            now = self._tables.now()
            round_id = self._tables.insert("rounds", {
                "status": "running", "trigger": trigger, "requested_by": requested_by, "host": process.host,
                "pid": process.pid, "pid_start": process.start, "started_at": now, "updated_at": now,
                "log_path": log_path,
            })
            return self.round(round_id)

    def adopt_round(self, round_id: int, *, process: ProcessIdentity) -> Round:
        """The process that runs a round claimed on its behalf (by the app) takes over its lock."""
        with self._tables.transaction():
            row = self.round(round_id)
            if row.status != "running":
                raise Conflict(f"Round {round_id} is {row.status}, not running; start a new round instead.")
            self._tables.update("rounds", round_id, {"host": process.host, "pid": process.pid,
                                                     "pid_start": process.start, "updated_at": self._tables.now()})
            return self.round(round_id)

    def reap_dead_rounds(self, *, alive: Callable[[Round], bool] | None = None) -> list[Round]:
        """Mark running rounds whose process is gone as failed; returns them."""
        alive = alive or (lambda r: is_alive(r.process, last_seen=r.updated_at))
        reaped = []
        with self._tables.transaction():
            for r in self._round_rows("WHERE status = 'running'"):
                if not alive(r):
                    error = (f"The round process (pid {r.pid} on {r.host}) stopped without finishing: "
                             f"it was killed or crashed. Last progress: {r.progress or 'none'}.")
                    self._tables.update("rounds", r.id, {"status": "failed", "error": error,
                                                         "finished_at": self._tables.now()})
                    reaped.append(self.round(r.id))
        return reaped

    def set_round_log(self, round_id: int, log_path: str) -> None:
        with self._tables.transaction():
            self._tables.update("rounds", round_id, {"log_path": log_path})

    def update_round_progress(self, round_id: int, progress: str) -> None:
        with self._tables.transaction():
            self._tables.update("rounds", round_id, {"progress": progress[:2000], "updated_at": self._tables.now()})

    def finish_round(self, round_id: int, *, error: str | None = None, adapter_version: int | None = None) -> Round:
        """Release the lock: succeeded (with the registered adapter) or failed (with its error)."""
        with self._tables.transaction():
            if self.round(round_id).status != "running":
                raise Conflict(f"Round {round_id} is not running.")
            now = self._tables.now()
            self._tables.update("rounds", round_id, {
                "status": "failed" if error else "succeeded", "error": error, "adapter_version": adapter_version,
                "finished_at": now, "updated_at": now,
            })
            return self.round(round_id)

    def round(self, round_id: int) -> Round:
        with self._tables.lock:
            rows = self._round_rows("WHERE id = ?", [round_id])
        if not rows:
            raise NotFound(f"Round {round_id} does not exist.")
        return rows[0]

    def rounds(self, *, limit: int = 100) -> list[Round]:
        """The newest rounds first."""
        with self._tables.lock:
            return self._round_rows("ORDER BY id DESC LIMIT ?", [limit])

    def running_round(self) -> Round | None:
        with self._tables.lock:
            rows = self._round_rows("WHERE status = 'running'")
        return rows[0] if rows else None

    def _round_rows(self, where: str, params: Sequence[Any] | None = None) -> list[Round]:
        return [Round(**r) for r in self._tables.rows(f"SELECT * FROM rounds {where}", params)]
