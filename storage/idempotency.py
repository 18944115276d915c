"""The idempotency_keys table: the response each request with an Idempotency-Key got, so that a retry
gets the same response instead of writing twice. IdempotencyKeys owns that table; it writes through
the chat database's shared connection (storage.tables), so the request's own writes and its saved
response commit in one FeedbackStore.transaction()."""

from __future__ import annotations

import json
from datetime import timedelta, timezone
from typing import Any

from .checks import check_name, check_user, json_object
from .records import SavedResponse
from .tables import Tables


class IdempotencyKeys:
    """Owns the idempotency_keys table: saving, finding and forgetting saved responses."""

    def __init__(self, tables: Tables, *, keep_days: float) -> None:
        self._tables = tables
        self._keep_days = keep_days  # StorageConfig.idempotency_days

    def saved_response(self, *, user: str, key: str) -> SavedResponse | None:
        """The response a user's earlier request with this Idempotency-Key got, if there was one."""
        with self._tables.lock:
            rows = self._tables.rows('SELECT * FROM idempotency_keys WHERE user = ? AND "key" = ?', [user, key])
        if not rows:
            return None
        row = rows[0]
        return SavedResponse(fingerprint=row["fingerprint"], status=row["status"], body=json.loads(row["response"]))

    def save_response(self, *, user: str, key: str, fingerprint: str, status: int, body: dict[str, Any]) -> None:
        """Remember the response to a request with an Idempotency-Key. Call it inside the
        transaction() that wrote the request's rows, so both commit or neither does."""
        check_user(user)
        check_name(key, "An Idempotency-Key")
        row = {"user": user, "key": key, "fingerprint": fingerprint, "status": status,
               "response": json_object(body, "A saved response"), "created_at": self._tables.now()}
        with self._tables.transaction():
            self._tables.insert("idempotency_keys", row)

    def forget_idempotency_keys(self) -> int:
        """Delete saved responses older than keep_days (0: keep them all); returns how many. Retries
        come within minutes; past the limit a key only takes room."""
        if self._keep_days <= 0:
            return 0
        cutoff = (self._tables.clock() - timedelta(days=self._keep_days)).astimezone(timezone.utc)
        with self._tables.transaction():
            return self._tables.db.execute("DELETE FROM idempotency_keys WHERE created_at < ?",
                                           [cutoff.isoformat(timespec="milliseconds")]).rowcount
