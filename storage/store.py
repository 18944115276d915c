"""The feedback store: every conversation, answer and piece of feedback, in one SQLite database."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from .config import StorageConfig, db_path
from .errors import Conflict, InvalidInput, NotFound
from .process import ProcessIdentity, is_alive
from .permissions import private_dir, private_file, restrict_to_owner, warn_if_shared
from .schema import migrate

ROLES = ("system", "user", "assistant")
SOURCES = ("chat", "api", "compare", "import")
MESSAGE_STATUSES = ("complete", "streaming", "incomplete")
FINISHED_STATUSES = ("complete", "incomplete")
ADAPTER_STATUSES = ("candidate", "active", "rejected", "retired", "failed")
ROUND_STATUSES = ("running", "succeeded", "failed")
ROUND_TRIGGERS = ("schedule", "admin", "cli", "worker")
MIN_RANKED_ANSWERS = 2  # one answer cannot be ranked against anything
INTERRUPTED = "interrupted"  # finish_reason of an answer a crash (or a failed final write) cut off
STAT_TABLES = ("conversations", "messages", "votes", "rankings", "demonstrations", "adapters", "rounds")


@dataclass(frozen=True)
class Message:
    id: int
    conversation_id: int
    parent_id: int | None
    user: str
    role: str
    content: str
    model: str | None
    adapter_version: int | None  # None = the base model answered
    sampling: dict[str, Any] | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: float | None
    ttft_ms: float | None
    finish_reason: str | None
    status: str
    created_at: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Message:
        sampling = json.loads(row["sampling"]) if row["sampling"] is not None else None
        return cls(**{**row, "sampling": sampling})


@dataclass(frozen=True)
class Conversation:
    id: int
    user: str
    title: str | None  # the stored title, else the first user message cut short
    source: str
    created_at: str
    updated_at: str
    messages: list[Message] = field(default_factory=list)  # empty in conversation listings


@dataclass(frozen=True)
class Vote:
    id: int
    response_id: int
    user: str
    rating: int  # 1 = thumbs up, -1 = thumbs down
    reason: str | None
    comment: str | None
    created_at: str


@dataclass(frozen=True)
class Ranking:
    id: int
    user: str
    prompt_id: int  # the user message every ranked answer replies to
    k: int
    source: str
    import_key: str | None
    created_at: str
    response_ids: list[int]  # best first


@dataclass(frozen=True)
class Demonstration:
    id: int
    response_id: int  # the answer this text replaces; that answer is kept as it was
    user: str
    content: str
    created_at: str


@dataclass(frozen=True)
class Adapter:
    version: int
    path: str
    status: str
    base_model: str
    parent_version: int | None
    metrics: dict[str, Any]
    data: dict[str, Any]
    error: str | None
    created_at: str
    activated_at: str | None
    round_id: int | None = None
    decision: dict[str, Any] | None = None  # the promotion gate's (or an admin's) verdict
    pruned_at: str | None = None  # its files were deleted by retention

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Adapter:
        return cls(**{**row, "metrics": json.loads(row["metrics"]), "data": json.loads(row["data"]),
                      "decision": json.loads(row["decision"]) if row.get("decision") else None})


@dataclass(frozen=True)
class Round:
    """One alignment round; the row with status 'running' is the one-round-at-a-time lock."""

    id: int
    status: str
    trigger: str
    requested_by: str | None
    host: str | None
    pid: int | None
    pid_start: str | None
    started_at: str
    updated_at: str | None
    finished_at: str | None
    progress: str | None
    error: str | None
    adapter_version: int | None
    log_path: str | None

    @property
    def process(self) -> ProcessIdentity:
        return ProcessIdentity(host=self.host or "", pid=self.pid or 0, start=self.pid_start or "")


@dataclass(frozen=True)
class SavedResponse:
    """The response a request with an Idempotency-Key got; a retry with that key gets it again."""

    fingerprint: str  # of the original request: the same key with another request is refused
    status: int
    body: dict[str, Any]


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class FeedbackStore:
    """Owns the tables of the chat database: meta, conversations, messages, votes, rankings,
    ranking_items, demonstrations, adapters, rounds and idempotency_keys. It is the only code that
    reads or writes them.

    Every write is validated first and committed before the method returns; a refused write
    raises a StoreError and leaves the database untouched.
    """

    def __init__(
        self,
        db: Database,
        *,
        config: StorageConfig | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.db = db
        self.config = config or StorageConfig()
        self._clock = clock
        # The server's threads share one connection. sqlite-utils wraps even reads in savepoints,
        # so reads take the lock too; re-entrant so transaction() can wrap many writes.
        self._lock = threading.RLock()
        self.db.execute("PRAGMA foreign_keys = ON")
        migrate(self.db)

    @classmethod
    def open(
        cls,
        data_dir: str | Path,
        *,
        config: StorageConfig | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> FeedbackStore:
        """Open (creating if needed) data_dir/chat.db in WAL mode, usable from any thread."""
        config = config or StorageConfig(data_dir=str(data_dir))
        path = db_path(data_dir)
        warn_if_shared(private_dir(path.parent))
        # 0600 before SQLite opens it: SQLite gives the -wal and -shm files the database file's mode.
        private_file(path)
        for sidecar in ("-wal", "-shm"):
            restrict_to_owner(path.with_name(path.name + sidecar))
        conn = sqlite3.connect(path, check_same_thread=False, timeout=config.busy_timeout_s)
        # No sqlite-utils plugins: nothing installed elsewhere should change how this connection behaves.
        db = Database(conn, execute_plugins=False)
        # WAL lets the trainer read while the server writes.
        db.enable_wal()
        return cls(db, config=config, clock=clock)

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[FeedbackStore]:
        """Group writes into one commit: all of them land, or none if an error escapes the block.

        The outermost block takes the write lock up front (BEGIN IMMEDIATE), so a lock another
        process holds is waited for, up to busy_timeout_s. A plain BEGIN that reads before it
        writes, as most of ours do, gets 'database is locked' at once: SQLite does not wait there,
        because waiting could deadlock."""
        with self._lock:
            if self.db.conn.in_transaction:  # nested: a savepoint inside the outer block
                with self.db.atomic():
                    yield self
                return
            self.db.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
                self.db.conn.commit()
            except BaseException:
                self.db.conn.rollback()
                raise

    # ---- conversations and messages -------------------------------------------------------

    def create_conversation(self, *, user: str, title: str | None = None, source: str = "chat") -> int:
        _check_user(user)
        _check_choice(source, SOURCES, "A conversation source")
        if title is not None:
            _check_text(title, self.config.max_message_chars, "A title")
        now = self._now()
        row = {"user": user, "title": title, "source": source, "created_at": now, "updated_at": now}
        with self.transaction():
            return self._insert("conversations", row)

    def record_message(
        self,
        *,
        conversation_id: int,
        user: str,
        role: str,
        content: str,
        parent_id: int | None = None,
        model: str | None = None,
        adapter_version: int | None = None,
        sampling: dict[str, Any] | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        latency_ms: float | None = None,
        ttft_ms: float | None = None,
        finish_reason: str | None = None,
        status: str = "complete",
    ) -> int:
        _check_user(user)
        _check_choice(role, ROLES, "A role")
        _check_choice(status, MESSAGE_STATUSES, "A message status")
        _check_text(content, self.config.max_message_chars, "A message")
        if role == "user":
            _check_not_blank(content, "A user message")
        sampling_json = _sampling_json(sampling)
        with self.transaction():
            self._conversation_row(conversation_id, user=user)
            if parent_id is not None:
                self._check_parent(parent_id, conversation_id=conversation_id, user=user)
            row = {
                "conversation_id": conversation_id,
                "parent_id": parent_id,
                "user": user,
                "role": role,
                "content": content,
                "model": model,
                "adapter_version": adapter_version,
                "sampling": sampling_json,
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "latency_ms": latency_ms,
                "ttft_ms": ttft_ms,
                "finish_reason": finish_reason,
                "status": status,
            }
            return self._insert_messages([row])[0]

    def start_answers(
        self,
        *,
        conversation_id: int,
        user: str,
        parent_id: int,
        n: int = 1,
        model: str | None = None,
        adapter_version: int | None = None,
        sampling: dict[str, Any] | None = None,
    ) -> list[int]:
        """Allocate n empty 'streaming' answers to a user message, so their ids exist before any token."""
        _check_user(user)
        limit = self.config.max_answers_per_request
        if not _is_int(n) or not 1 <= n <= limit:
            raise InvalidInput(f"Between 1 and {limit} answers can be started at once; got {n}.")
        sampling_json = _sampling_json(sampling)
        with self.transaction():
            self._conversation_row(conversation_id, user=user)
            parent = self._check_parent(parent_id, conversation_id=conversation_id, user=user)
            if parent["role"] != "user":
                raise InvalidInput(
                    f"Answers must reply to a user message; message {parent_id} is {_role_phrase(parent['role'])}."
                )
            row = {
                "conversation_id": conversation_id,
                "parent_id": parent_id,
                "user": user,
                "role": "assistant",
                "content": "",
                "model": model,
                "adapter_version": adapter_version,
                "sampling": sampling_json,
                "status": "streaming",
            }
            return self._insert_messages([row] * n)

    def finish_answer(
        self,
        message_id: int,
        *,
        content: str,
        completion_tokens: int | None = None,
        prompt_tokens: int | None = None,
        latency_ms: float | None = None,
        ttft_ms: float | None = None,
        finish_reason: str | None = None,
        status: str = "complete",
    ) -> None:
        """Fill in an answer allocated by start_answers once its stream has ended."""
        _check_choice(status, FINISHED_STATUSES, "A finished answer's status")
        _check_text(content, self.config.max_message_chars, "A message")
        with self.transaction():
            row = self._message_row(message_id, noun="Answer")
            if row["role"] != "assistant" or row["status"] != "streaming":
                raise InvalidInput(f"Answer {message_id} is not being streamed, so it cannot be finished.")
            self._update(
                "messages",
                message_id,
                {
                    "content": content,
                    "completion_tokens": completion_tokens,
                    "prompt_tokens": prompt_tokens,
                    "latency_ms": latency_ms,
                    "ttft_ms": ttft_ms,
                    "finish_reason": finish_reason,
                    "status": status,
                },
            )
            self._touch(row["conversation_id"], self._now())

    def mark_interrupted_answers(self, ids: Sequence[int] | None = None) -> int:
        """Mark answers left 'streaming' as 'incomplete' with finish_reason INTERRUPTED, keeping what
        they hold: all of them at start-up (a crash cut their streams off; only the serving process
        writes answers), or just `ids` (a stream whose final write failed). They take no feedback
        (_answer_row). Returns how many were marked."""
        if ids is not None and not ids:
            return 0
        sql = (f"UPDATE messages SET status = 'incomplete', finish_reason = '{INTERRUPTED}' "
               "WHERE role = 'assistant' AND status = 'streaming'")
        params = list(ids or [])
        if params:
            sql += f" AND id IN ({', '.join('?' for _ in params)})"
        with self.transaction():
            return self.db.execute(sql, params).rowcount

    # ---- feedback --------------------------------------------------------------------------

    def record_vote(
        self,
        *,
        response_id: int,
        user: str,
        rating: int,
        reason: str | None = None,
        comment: str | None = None,
    ) -> int:
        """Append a thumbs up (1) or down (-1); a user's latest vote on an answer is the one that counts.
        The same vote again (same rating, reason and comment as the user's latest on that answer) adds
        no row and returns the latest's id: it changes nothing, and UIs that fire one click twice (Gradio
        does, for a thumbs-down reason) would otherwise count it twice toward the next round."""
        _check_user(user)
        if not _is_int(rating) or rating not in (1, -1):
            raise InvalidInput(f"A rating must be 1 (thumbs up) or -1 (thumbs down); got {rating!r}.")
        if reason is not None:
            _check_text(reason, self.config.max_reason_chars, "A vote reason")
        if comment is not None:
            _check_text(comment, self.config.max_comment_chars, "A comment")
        with self.transaction():
            self._answer_row(response_id, user=user)
            latest = self.db.execute(
                "SELECT id, rating, reason, comment FROM votes WHERE response_id = ? AND user = ? "
                "ORDER BY id DESC LIMIT 1", [response_id, user]).fetchone()
            if latest is not None and tuple(latest[1:]) == (rating, reason, comment):
                return latest[0]
            row = {
                "response_id": response_id,
                "user": user,
                "rating": rating,
                "reason": reason,
                "comment": comment,
                "created_at": self._now(),
            }
            return self._insert("votes", row)

    def record_ranking(
        self,
        *,
        user: str,
        response_ids: Sequence[int],
        source: str = "ui",
        import_key: str | None = None,
    ) -> int:
        """Store an ordering of answers to one prompt, best first."""
        _check_user(user)
        _check_name(source, "A ranking source")
        ids = self._check_ranking_size(response_ids)
        with self.transaction():
            prompt_id = self._check_same_prompt(ids, user=user)
            if import_key is not None and import_key in self._import_keys([import_key]):
                raise InvalidInput("This ranking has already been imported.")
            row = {
                "user": user,
                "prompt_id": prompt_id,
                "k": len(ids),
                "source": source,
                "import_key": import_key,
                "created_at": self._now(),
            }
            ranking_id = self._insert("rankings", row)
            for position, response_id in enumerate(ids):  # position 0 = best
                item = {"ranking_id": ranking_id, "position": position, "response_id": response_id}
                self._insert("ranking_items", item)
            return ranking_id

    def record_demonstration(self, *, response_id: int, user: str, content: str) -> int:
        """Store the answer a user wrote in place of a model answer (which stays untouched)."""
        _check_user(user)
        _check_text(content, self.config.max_message_chars, "A demonstration")
        _check_not_blank(content, "A demonstration")
        with self.transaction():
            self._answer_row(response_id, user=user)
            row = {"response_id": response_id, "user": user, "content": content, "created_at": self._now()}
            return self._insert("demonstrations", row)

    # ---- idempotency keys ------------------------------------------------------------------

    def saved_response(self, *, user: str, key: str) -> SavedResponse | None:
        """The response a user's earlier request with this Idempotency-Key got, if there was one."""
        with self._lock:
            rows = self._rows('SELECT * FROM idempotency_keys WHERE user = ? AND "key" = ?', [user, key])
        if not rows:
            return None
        row = rows[0]
        return SavedResponse(fingerprint=row["fingerprint"], status=row["status"], body=json.loads(row["response"]))

    def save_response(self, *, user: str, key: str, fingerprint: str, status: int, body: dict[str, Any]) -> None:
        """Remember the response to a request with an Idempotency-Key. Call it inside the
        transaction() that wrote the request's rows, so both commit or neither does."""
        _check_user(user)
        _check_name(key, "An Idempotency-Key")
        row = {"user": user, "key": key, "fingerprint": fingerprint, "status": status,
               "response": _json_object(body, "A saved response"), "created_at": self._now()}
        with self.transaction():
            self._insert("idempotency_keys", row)

    def forget_idempotency_keys(self) -> int:
        """Delete saved responses older than config.idempotency_days (0: keep them all); returns
        how many. Retries come within minutes; past the limit a key only takes room."""
        days = self.config.idempotency_days
        if days <= 0:
            return 0
        cutoff = (self._clock() - timedelta(days=days)).astimezone(timezone.utc).isoformat(timespec="milliseconds")
        with self.transaction():
            return self.db.execute("DELETE FROM idempotency_keys WHERE created_at < ?", [cutoff]).rowcount

    # ---- reading one user's data -----------------------------------------------------------

    def message(self, message_id: int, *, user: str | None = None) -> Message:
        with self._lock:
            return Message.from_row(self._message_row(message_id, user=user))

    def thread(self, conversation_id: int, *, user: str) -> list[Message]:
        """The current thread: root to the conversation's most recently created message."""
        with self._lock:
            self._conversation_row(conversation_id, user=user)
            rows = self._rows("SELECT max(id) AS id FROM messages WHERE conversation_id = ?", [conversation_id])
            last_id = rows[0]["id"]
            return [] if last_id is None else self._path(last_id)

    def context(self, message_id: int, *, user: str | None = None) -> list[dict[str, str]]:
        """What the model saw: [{"role", "content"}, ...] from the root to this message inclusive."""
        with self._lock:
            self._message_row(message_id, user=user)
            return [{"role": m.role, "content": m.content} for m in self._path(message_id)]

    def conversation(self, conversation_id: int, *, user: str) -> Conversation:
        """One conversation with every message of its tree, oldest first."""
        with self._lock:
            row = self._conversation_row(conversation_id, user=user)
            rows = self._rows("SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", [conversation_id])
            messages = [Message.from_row(r) for r in rows]
            first_user = next((m.content for m in messages if m.role == "user"), None)
            return self._conversation(row, first_user, messages)

    def conversations(self, *, user: str, limit: int = 50) -> list[Conversation]:
        """A user's conversations, most recently updated first, without their messages."""
        if not _is_int(limit) or limit < 1:
            raise InvalidInput(f"A conversation list limit must be a positive whole number; got {limit!r}.")
        sql = """
            SELECT c.*, (SELECT content FROM messages m
                         WHERE m.conversation_id = c.id AND m.role = 'user'
                         ORDER BY m.id LIMIT 1) AS first_user
            FROM conversations c WHERE c.user = ?
            ORDER BY c.updated_at DESC, c.id DESC LIMIT ?
        """
        with self._lock:
            rows = self._rows(sql, [user, limit])
        conversations = []
        for row in rows:
            first_user = row.pop("first_user")
            conversations.append(self._conversation(row, first_user, []))
        return conversations

    # ---- reading everyone's feedback (for export and training) -----------------------------

    def messages(self, *, role: str | None = None) -> list[Message]:
        """Every user's messages, oldest first, optionally of one role."""
        if role is not None:
            _check_choice(role, ROLES, "A role")
        with self._lock:
            if role is None:
                rows = self._rows("SELECT * FROM messages ORDER BY id")
            else:
                rows = self._rows("SELECT * FROM messages WHERE role = ? ORDER BY id", [role])
        return [Message.from_row(r) for r in rows]

    def latest_votes(self) -> list[Vote]:
        """The vote that counts for each (user, answer): the most recent one."""
        sql = """
            SELECT * FROM votes
            WHERE id IN (SELECT max(id) FROM votes GROUP BY user, response_id)
            ORDER BY id
        """
        with self._lock:
            return [Vote(**r) for r in self._rows(sql)]

    def rankings(self) -> list[Ranking]:
        with self._lock:
            rankings = self._rows("SELECT * FROM rankings ORDER BY id")
            items = self._rows("SELECT * FROM ranking_items ORDER BY ranking_id, position")
        ordered: dict[int, list[int]] = {r["id"]: [] for r in rankings}
        for item in items:
            ordered[item["ranking_id"]].append(item["response_id"])
        return [Ranking(**r, response_ids=ordered[r["id"]]) for r in rankings]

    def demonstrations(self) -> list[Demonstration]:
        with self._lock:
            return [Demonstration(**r) for r in self._rows("SELECT * FROM demonstrations ORDER BY id")]

    def import_keys(self) -> set[str]:
        """Keys of every imported ranking, so an importer can skip rows it has already stored."""
        with self._lock:
            rows = self._rows("SELECT import_key FROM rankings WHERE import_key IS NOT NULL")
        return {r["import_key"] for r in rows}

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {table: self.db[table].count for table in STAT_TABLES}

    def feedback_counts(self) -> dict[str, int]:
        """What the training datasets are built from, counted by SQL alone (cheap next to building
        them): the pairs rankings give (k choose 2 each); from each user's latest vote, per prompt,
        the pairs thumbs give (each answer voted up over each other answer voted down) and the
        thumbs that find no opposite vote; demonstrations; user messages."""
        sql = """
            WITH latest AS (
                SELECT v.response_id, v.rating, m.parent_id FROM votes v JOIN messages m ON m.id = v.response_id
                WHERE v.id IN (SELECT max(id) FROM votes GROUP BY user, response_id)
            ), per_answer AS (
                SELECT parent_id, max(rating = 1) AS up, max(rating = -1) AS down FROM latest GROUP BY response_id
            ), per_prompt AS (
                SELECT sum(up) AS ups, sum(down) AS downs, sum(up AND down) AS both FROM per_answer
                GROUP BY parent_id
            )
            SELECT (SELECT coalesce(sum(k * (k - 1) / 2), 0) FROM rankings) AS ranking_pairs,
                   (SELECT coalesce(sum(ups * downs - both), 0) FROM per_prompt) AS thumbs_pairs,
                   -- an answer voted up finds no opposite only if the one answer voted down is itself
                   (SELECT coalesce(sum(CASE WHEN ups = 0 OR downs = 0 THEN ups + downs
                                             ELSE (downs = 1 AND both = 1) + (ups = 1 AND both = 1) END), 0)
                    FROM per_prompt) AS unpaired_thumbs,
                   (SELECT count(*) FROM demonstrations) AS demonstrations,
                   (SELECT count(*) FROM messages WHERE role = 'user') AS user_messages
        """
        with self._lock:
            return self._rows(sql)[0]

    # ---- adapter registry ------------------------------------------------------------------

    def register_adapter(
        self,
        *,
        path: str,
        base_model: str,
        parent_version: int | None = None,
        metrics: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        round_id: int | None = None,
    ) -> int:
        """Record a trained adapter as a 'candidate' under the next version number."""
        _check_name(path, "An adapter path")
        _check_name(base_model, "A base model name")
        metrics_json = _json_object(metrics or {}, "Adapter metrics")
        data_json = _json_object(data or {}, "Adapter data")
        with self.transaction():
            if parent_version is not None:
                self._adapter_row(parent_version)
            # Rows are never deleted (a trigger forbids it), so max + 1 is never a reused version.
            version = self._rows("SELECT coalesce(max(version), 0) + 1 AS v FROM adapters")[0]["v"]
            row = {
                "version": version,
                "path": path,
                "status": "candidate",
                "base_model": base_model,
                "parent_version": parent_version,
                "metrics": metrics_json,
                "data": data_json,
                "created_at": self._now(),
                "round_id": round_id,
            }
            self._insert("adapters", row)
            return version

    def adapters(self) -> list[Adapter]:
        with self._lock:
            return [Adapter.from_row(r) for r in self._rows("SELECT * FROM adapters ORDER BY version")]

    def adapter(self, version: int) -> Adapter:
        with self._lock:
            return Adapter.from_row(self._adapter_row(version))

    def active_adapter(self) -> Adapter | None:
        with self._lock:
            rows = self._rows("SELECT * FROM adapters WHERE status = 'active'")
        return Adapter.from_row(rows[0]) if rows else None

    def set_adapter_status(self, version: int, status: str, error: str | None = None) -> None:
        """Change an adapter's status; activating one retires the adapter that was active."""
        _check_choice(status, ADAPTER_STATUSES, "An adapter status")
        with self.transaction():
            self._adapter_row(version)
            changes: dict[str, Any] = {"status": status, "error": error}
            if status == "active":
                # The server serves exactly one adapter at a time.
                self.db.execute(
                    "UPDATE adapters SET status = 'retired' WHERE status = 'active' AND version != ?", [version]
                )
                changes["activated_at"] = self._now()
            self._update("adapters", version, changes, key="version")

    def deactivate_adapters(self) -> None:
        """Serve the base model: the active adapter, if any, is retired."""
        with self.transaction():
            self.db.execute("UPDATE adapters SET status = 'retired' WHERE status = 'active'")

    def set_adapter_decision(self, version: int, *, promote: bool, reasons: list[str], by: str) -> None:
        """Record the promotion gate's (or an admin's) verdict; a refused candidate becomes 'rejected'."""
        decision = _json_object({"promote": promote, "reasons": list(reasons), "by": by, "at": self._now()},
                                "A decision")
        with self.transaction():
            row = self._adapter_row(version)
            changes: dict[str, Any] = {"decision": decision}
            if not promote and row["status"] == "candidate":
                changes["status"] = "rejected"
            self._update("adapters", version, changes, key="version")

    def mark_adapter_pruned(self, version: int) -> None:
        with self.transaction():
            self._adapter_row(version)
            self._update("adapters", version, {"pruned_at": self._now()}, key="version")

    def activation_history(self) -> list[Adapter]:
        """Adapters that were ever served, the most recently activated first."""
        with self._lock:
            rows = self._rows("SELECT * FROM adapters WHERE activated_at IS NOT NULL ORDER BY activated_at DESC")
        return [Adapter.from_row(r) for r in rows]

    # ---- alignment rounds (and their lock) -------------------------------------------------

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
        _check_choice(trigger, ROUND_TRIGGERS, "A round trigger")
        with self.transaction():
            self.reap_dead_rounds(alive=alive)
            running = self.running_round()
            if running is not None:
                raise Conflict(
                    f"Round {running.id} is already running (started {running.started_at}, {running.trigger}, "
                    f"pid {running.pid} on {running.host}); one round runs at a time."
                )
            now = self._now()
            round_id = self._insert("rounds", {
                "status": "running", "trigger": trigger, "requested_by": requested_by, "host": process.host,
                "pid": process.pid, "pid_start": process.start, "started_at": now, "updated_at": now,
                "log_path": log_path,
            })
            return self.round(round_id)

    def adopt_round(self, round_id: int, *, process: ProcessIdentity) -> Round:
        """The process that runs a round claimed on its behalf (by the app) takes over its lock."""
        with self.transaction():
            row = self.round(round_id)
            if row.status != "running":
                raise Conflict(f"Round {round_id} is {row.status}, not running; start a new round instead.")
            self._update("rounds", round_id, {"host": process.host, "pid": process.pid,
                                              "pid_start": process.start, "updated_at": self._now()})
            return self.round(round_id)

    def reap_dead_rounds(self, *, alive: Callable[[Round], bool] | None = None) -> list[Round]:
        """Mark running rounds whose process is gone as failed; returns them."""
        alive = alive or (lambda r: is_alive(r.process, last_seen=r.updated_at))
        reaped = []
        with self.transaction():
            for r in self._round_rows("WHERE status = 'running'"):
                if not alive(r):
                    error = (f"The round process (pid {r.pid} on {r.host}) stopped without finishing: "
                             f"it was killed or crashed. Last progress: {r.progress or 'none'}.")
                    self._update("rounds", r.id, {"status": "failed", "error": error, "finished_at": self._now()})
                    reaped.append(self.round(r.id))
        return reaped

    def set_round_log(self, round_id: int, log_path: str) -> None:
        with self.transaction():
            self._update("rounds", round_id, {"log_path": log_path})

    def update_round_progress(self, round_id: int, progress: str) -> None:
        with self.transaction():
            self._update("rounds", round_id, {"progress": progress[:2000], "updated_at": self._now()})

    def finish_round(self, round_id: int, *, error: str | None = None, adapter_version: int | None = None) -> Round:
        """Release the lock: succeeded (with the registered adapter) or failed (with its error)."""
        with self.transaction():
            if self.round(round_id).status != "running":
                raise Conflict(f"Round {round_id} is not running.")
            now = self._now()
            self._update("rounds", round_id, {
                "status": "failed" if error else "succeeded", "error": error, "adapter_version": adapter_version,
                "finished_at": now, "updated_at": now,
            })
            return self.round(round_id)

    def round(self, round_id: int) -> Round:
        with self._lock:
            rows = self._round_rows("WHERE id = ?", [round_id])
        if not rows:
            raise NotFound(f"Round {round_id} does not exist.")
        return rows[0]

    def rounds(self, *, limit: int = 100) -> list[Round]:
        """The newest rounds first."""
        with self._lock:
            return self._round_rows("ORDER BY id DESC LIMIT ?", [limit])

    def running_round(self) -> Round | None:
        with self._lock:
            rows = self._round_rows("WHERE status = 'running'")
        return rows[0] if rows else None

    def feedback_since(self, since: str | None) -> int:
        """Votes, rankings and demonstrations recorded after `since` (an ISO UTC time; None: all)."""
        since = since or ""
        with self._lock:
            return sum(
                self._rows(f'SELECT count(*) AS n FROM "{table}" WHERE created_at > ?', [since])[0]["n"]
                for table in ("votes", "rankings", "demonstrations")
            )

    def feedback_per_day(self) -> list[dict[str, Any]]:
        """[{day, votes, rankings, demonstrations}] for every UTC day with feedback, oldest first."""
        days: dict[str, dict[str, Any]] = {}
        with self._lock:
            for table in ("votes", "rankings", "demonstrations"):
                for r in self._rows(f'SELECT substr(created_at, 1, 10) AS day, count(*) AS n FROM "{table}" '
                                    "GROUP BY day"):
                    days.setdefault(r["day"], {"day": r["day"], "votes": 0, "rankings": 0,
                                               "demonstrations": 0})[table] = r["n"]
        return [days[d] for d in sorted(days)]

    # ---- helpers ---------------------------------------------------------------------------

    def _round_rows(self, where: str, params: Sequence[Any] | None = None) -> list[Round]:
        return [Round(**r) for r in self._rows(f"SELECT * FROM rounds {where}", params)]

    def _now(self) -> str:
        return self._clock().astimezone(timezone.utc).isoformat(timespec="milliseconds")

    def _rows(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        return list(self.db.query(sql, params))

    # sqlite-utils' Table.insert/update inspect the schema on every call, which made a
    # 1,795-pair import take ~8 s; these plain statements do the same job. Table and column
    # names always come from this module, never from input.
    def _insert(self, table: str, row: dict[str, Any]) -> int:
        columns = ", ".join(f'"{column}"' for column in row)
        marks = ", ".join("?" for _ in row)
        sql = f'INSERT INTO "{table}" ({columns}) VALUES ({marks})'
        return self.db.execute(sql, list(row.values())).lastrowid

    def _update(self, table: str, row_id: int, changes: dict[str, Any], *, key: str = "id") -> None:
        assignments = ", ".join(f'"{column}" = ?' for column in changes)
        sql = f'UPDATE "{table}" SET {assignments} WHERE "{key}" = ?'
        self.db.execute(sql, [*changes.values(), row_id])

    def _conversation_row(self, conversation_id: int, *, user: str | None) -> dict[str, Any]:
        rows = self._rows("SELECT * FROM conversations WHERE id = ?", [conversation_id])
        if not rows or (user is not None and rows[0]["user"] != user):
            raise NotFound(f"Conversation {conversation_id} does not exist.")
        return rows[0]

    def _message_row(self, message_id: int, *, user: str | None = None, noun: str = "Message") -> dict[str, Any]:
        rows = self._rows("SELECT * FROM messages WHERE id = ?", [message_id])
        if not rows or (user is not None and rows[0]["user"] != user):
            raise NotFound(f"{noun} {message_id} does not exist.")
        return rows[0]

    def _answer_row(self, response_id: int, *, user: str) -> dict[str, Any]:
        """An answer the model produced, owned by user: the only thing feedback can point at."""
        row = self._message_row(response_id, user=user, noun="Response")
        if row["role"] != "assistant":
            raise InvalidInput(
                f"Message {response_id} is {_role_phrase(row['role'])}; only assistant answers take feedback."
            )
        # Feedback on an assistant turn the client wrote itself (chat history sent to
        # /v1/chat/completions) would let a user write both sides of a preference pair. Every
        # produced answer names its model: start_answers is given the served model, the importer
        # IMPORT_MODEL; history turns are stored with none. `model` rather than `sampling` because
        # imported answers have no sampling, and rather than a new column because this needs no
        # migration and holds for every row already stored.
        if row["model"] is None:
            raise InvalidInput(
                f"Message {response_id} is an assistant turn sent as chat history, not an answer the model "
                "gave; only the model's own answers take feedback."
            )
        # What a crash cut off is not what the user read to the end (nor, when the final write failed,
        # what they saw at all): a preference over it would train on an accident.
        if row["finish_reason"] == INTERRUPTED:
            raise InvalidInput(
                f"Answer {response_id} was cut off when the server stopped, so it takes no feedback; ask again "
                "for a complete answer."
            )
        return row

    def _adapter_row(self, version: int) -> dict[str, Any]:
        rows = self._rows("SELECT * FROM adapters WHERE version = ?", [version])
        if not rows:
            raise NotFound(f"Adapter version {version} does not exist.")
        return rows[0]

    def _check_parent(self, parent_id: int, *, conversation_id: int, user: str) -> dict[str, Any]:
        parent = self._message_row(parent_id, user=user)
        if parent["conversation_id"] != conversation_id:
            raise InvalidInput(
                f"Message {parent_id} belongs to another conversation; a reply must stay in its conversation."
            )
        return parent

    def _check_ranking_size(self, response_ids: Sequence[int]) -> list[int]:
        if isinstance(response_ids, (str, bytes)) or not isinstance(response_ids, Sequence):
            raise InvalidInput("A ranking must be a list of answer ids, best first.")
        ids = list(response_ids)
        most = self.config.max_ranked_answers
        if not MIN_RANKED_ANSWERS <= len(ids) <= most:
            raise InvalidInput(f"A ranking needs between {MIN_RANKED_ANSWERS} and {most} answers; got {len(ids)}.")
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise InvalidInput(f"A ranking cannot list the same answer twice; {repeated[0]} appears more than once.")
        return ids

    def _check_same_prompt(self, response_ids: list[int], *, user: str) -> int:
        """The prompt every ranked answer replies to; all of them must reply to the same one."""
        parents = {self._answer_row(response_id, user=user)["parent_id"] for response_id in response_ids}
        if len(parents) != 1:
            raise InvalidInput("All ranked answers must answer the same prompt.")
        prompt_id = parents.pop()
        if prompt_id is None:
            raise InvalidInput("Ranked answers must reply to a prompt; these have no parent message.")
        return prompt_id

    def _import_keys(self, keys: list[str]) -> set[str]:
        marks = ", ".join("?" for _ in keys)
        rows = self._rows(f"SELECT import_key FROM rankings WHERE import_key IN ({marks})", keys)
        return {r["import_key"] for r in rows}

    def _insert_messages(self, rows: list[dict[str, Any]]) -> list[int]:
        now = self._now()
        ids = [self._insert("messages", {**row, "created_at": now}) for row in rows]
        self._touch(rows[0]["conversation_id"], now)
        return ids

    def _touch(self, conversation_id: int, now: str) -> None:
        self._update("conversations", conversation_id, {"updated_at": now})

    def _path(self, message_id: int) -> list[Message]:
        """The ancestors of a message and the message itself, root first."""
        sql = """
            WITH RECURSIVE path(id, depth) AS (
                SELECT ?, 0
                UNION ALL
                SELECT m.parent_id, p.depth + 1 FROM messages m JOIN path p ON m.id = p.id
                WHERE m.parent_id IS NOT NULL
            )
            SELECT m.* FROM path p JOIN messages m ON m.id = p.id ORDER BY p.depth DESC
        """
        return [Message.from_row(r) for r in self._rows(sql, [message_id])]

    def _conversation(
        self, row: dict[str, Any], first_user: str | None, messages: list[Message]
    ) -> Conversation:
        title = row["title"] if row["title"] is not None else self._title_from(first_user)
        return Conversation(**{**row, "title": title}, messages=messages)

    def _title_from(self, text: str | None) -> str | None:
        if text is None:
            return None
        words = " ".join(text.split())
        limit = self.config.title_chars
        return words if len(words) <= limit else words[: limit - 1].rstrip() + "…"


def _role_phrase(role: str) -> str:
    return "an assistant message" if role == "assistant" else f"a {role} message"


def _is_int(value: object) -> bool:
    # bool is an int subclass, but True is not a rating or a count.
    return isinstance(value, int) and not isinstance(value, bool)


def _check_user(user: object) -> None:
    if not isinstance(user, str) or not user.strip():
        raise InvalidInput("A user name is required.")


def _check_name(value: object, what: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} is required.")


def _check_choice(value: object, allowed: Sequence[str], what: str) -> None:
    if value not in allowed:
        raise InvalidInput(f"{what} must be one of {', '.join(allowed)}; got {value!r}.")


def _check_text(text: object, limit: int, what: str) -> None:
    if not isinstance(text, str):
        raise InvalidInput(f"{what} must be text.")
    if len(text) > limit:
        raise InvalidInput(f"{what} can be at most {limit:,} characters; got {len(text):,}.")


def _check_not_blank(text: str, what: str) -> None:
    if not text.strip():
        raise InvalidInput(f"{what} cannot be empty.")


def _sampling_json(sampling: dict[str, Any] | None) -> str | None:
    return None if sampling is None else _json_object(sampling, "Sampling parameters")


def _json_object(value: object, what: str) -> str:
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object.")
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        raise InvalidInput(f"{what} must contain only JSON values.") from None
