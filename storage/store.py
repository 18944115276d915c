"""The feedback store: every conversation, answer and piece of feedback, in one SQLite database.

FeedbackStore opens the database and owns the conversation and feedback tables; the other tables of
the same database have their own owners, reached from the store and sharing its connection and
transactions (storage.tables):

    store.registry      storage.adapters.AdapterRegistry   the adapters table and DATA_DIR/adapters/
    store.round_lock    storage.rounds.RoundLock           the rounds table (one round at a time)
    store.idempotency   storage.idempotency.IdempotencyKeys  saved responses to Idempotency-Keys
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from .adapters import ADAPTERS_DIR, AdapterRegistry
from .checks import check_choice, check_name, check_not_blank, check_text, check_user, is_int, json_object
from .config import StorageConfig, db_path
from .errors import InvalidInput, NotFound
from .idempotency import IdempotencyKeys
from .permissions import private_dir, private_file, restrict_to_owner, warn_if_shared
from .records import Conversation, Demonstration, Message, Ranking, Vote
from .rounds import RoundLock
from .schema import migrate
from .tables import Tables, utc_now

ROLES = ("system", "user", "assistant")
SOURCES = ("chat", "api", "compare", "import")
MESSAGE_STATUSES = ("complete", "streaming", "incomplete")
FINISHED_STATUSES = ("complete", "incomplete")
MIN_RANKED_ANSWERS = 2  # one answer cannot be ranked against anything
INTERRUPTED = "interrupted"  # finish_reason of an answer a crash (or a failed final write) cut off
STAT_TABLES = ("conversations", "messages", "votes", "rankings", "demonstrations", "adapters", "rounds")


class FeedbackStore:
    """Owns the chat database's connection (and its meta table, through migrate) and the tables of
    conversations and feedback: conversations, messages, votes, rankings, ranking_items and
    demonstrations. The adapters, rounds and idempotency_keys tables belong to `registry`,
    `round_lock` and `idempotency`, which write through the same connection, so one transaction()
    covers writes to any of them.

    Every write is validated first and committed before the method returns; a refused write
    raises a StoreError and leaves the database untouched.
    """

    def __init__(
        self,
        db: Database,
        *,
        config: StorageConfig | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.db = db
        self.config = config or StorageConfig()
        self._tables = Tables(db, clock=clock)
        self.db.execute("PRAGMA foreign_keys = ON")
        migrate(self.db)
        self.round_lock = RoundLock(self._tables)
        self.idempotency = IdempotencyKeys(self._tables, keep_days=self.config.idempotency_days)
        self.registry = AdapterRegistry(tables=self._tables, rounds=self.round_lock,
                                        adapters_dir=Path(self.config.data_dir) / ADAPTERS_DIR)

    @classmethod
    def open(
        cls,
        data_dir: str | Path,
        *,
        config: StorageConfig | None = None,
        clock: Callable[[], datetime] = utc_now,
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
        with self._tables.lock:
            self.db.close()

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[FeedbackStore]:
        """Group writes, to any table of the database, into one commit (storage.tables.Tables.transaction)."""
        with self._tables.transaction():
            yield self

    # ---- conversations and messages -------------------------------------------------------

    def create_conversation(self, *, user: str, title: str | None = None, source: str = "chat") -> int:
        check_user(user)
        check_choice(source, SOURCES, "A conversation source")
        if title is not None:
            check_text(title, self.config.max_message_chars, "A title")
        now = self._tables.now()
        row = {"user": user, "title": title, "source": source, "created_at": now, "updated_at": now}
        with self.transaction():
            return self._tables.insert("conversations", row)

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
        check_user(user)
        check_choice(role, ROLES, "A role")
        check_choice(status, MESSAGE_STATUSES, "A message status")
        check_text(content, self.config.max_message_chars, "A message")
        if role == "user":
            check_not_blank(content, "A user message")
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
        check_user(user)
        limit = self.config.max_answers_per_request
        if not is_int(n) or not 1 <= n <= limit:
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
        check_choice(status, FINISHED_STATUSES, "A finished answer's status")
        check_text(content, self.config.max_message_chars, "A message")
        with self.transaction():
            row = self._message_row(message_id, noun="Answer")
            if row["role"] != "assistant" or row["status"] != "streaming":
                raise InvalidInput(f"Answer {message_id} is not being streamed, so it cannot be finished.")
            self._tables.update(
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
            self._touch(row["conversation_id"], self._tables.now())

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
        check_user(user)
        if not is_int(rating) or rating not in (1, -1):
            raise InvalidInput(f"A rating must be 1 (thumbs up) or -1 (thumbs down); got {rating!r}.")
        if reason is not None:
            check_text(reason, self.config.max_reason_chars, "A vote reason")
        if comment is not None:
            check_text(comment, self.config.max_comment_chars, "A comment")
        # A blank reason or comment says nothing: stored as NULL whichever door it came through (the UI sends
        # None, an API client ""), so the same vote from either is one vote and reads the same in exports.
        reason, comment = (None if text is not None and not text.strip() else text for text in (reason, comment))
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
                "created_at": self._tables.now(),
            }
            return self._tables.insert("votes", row)

    def record_ranking(
        self,
        *,
        user: str,
        response_ids: Sequence[int],
        source: str = "ui",
        import_key: str | None = None,
    ) -> int:
        """Store an ordering of answers to one prompt, best first."""
        check_user(user)
        check_name(source, "A ranking source")
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
                "created_at": self._tables.now(),
            }
            ranking_id = self._tables.insert("rankings", row)
            for position, response_id in enumerate(ids):  # position 0 = best
                item = {"ranking_id": ranking_id, "position": position, "response_id": response_id}
                self._tables.insert("ranking_items", item)
            return ranking_id

    def record_demonstration(self, *, response_id: int, user: str, content: str) -> int:
        """Store the answer a user wrote in place of a model answer (which stays untouched)."""
        check_user(user)
        check_text(content, self.config.max_message_chars, "A demonstration")
        check_not_blank(content, "A demonstration")
        with self.transaction():
            self._answer_row(response_id, user=user)
            row = {"response_id": response_id, "user": user, "content": content, "created_at": self._tables.now()}
            return self._tables.insert("demonstrations", row)

    # ---- reading one user's data -----------------------------------------------------------

    def message(self, message_id: int, *, user: str | None = None) -> Message:
        with self._tables.lock:
            return Message.from_row(self._message_row(message_id, user=user))

    def thread(self, conversation_id: int, *, user: str) -> list[Message]:
        """The current thread: root to the conversation's most recently created message."""
        with self._tables.lock:
            self._conversation_row(conversation_id, user=user)
            rows = self._tables.rows("SELECT max(id) AS id FROM messages WHERE conversation_id = ?", [conversation_id])
            last_id = rows[0]["id"]
            return [] if last_id is None else self._path(last_id)

    def context(self, message_id: int, *, user: str | None = None) -> list[dict[str, str]]:
        """What the model saw: [{"role", "content"}, ...] from the root to this message inclusive."""
        with self._tables.lock:
            self._message_row(message_id, user=user)
            return [{"role": m.role, "content": m.content} for m in self._path(message_id)]

    def conversation(self, conversation_id: int, *, user: str) -> Conversation:
        """One conversation with every message of its tree, oldest first."""
        with self._tables.lock:
            row = self._conversation_row(conversation_id, user=user)
            rows = self._tables.rows("SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", [conversation_id])
            messages = [Message.from_row(r) for r in rows]
            first_user = next((m.content for m in messages if m.role == "user"), None)
            return self._conversation(row, first_user, messages)

    def conversations(self, *, user: str, limit: int = 50) -> list[Conversation]:
        """A user's conversations, most recently updated first, without their messages."""
        if not is_int(limit) or limit < 1:
            raise InvalidInput(f"A conversation list limit must be a positive whole number; got {limit!r}.")
        sql = """
            SELECT c.*, (SELECT content FROM messages m
                         WHERE m.conversation_id = c.id AND m.role = 'user'
                         ORDER BY m.id LIMIT 1) AS first_user
            FROM conversations c WHERE c.user = ?
            ORDER BY c.updated_at DESC, c.id DESC LIMIT ?
        """
        with self._tables.lock:
            rows = self._tables.rows(sql, [user, limit])
        conversations = []
        for row in rows:
            first_user = row.pop("first_user")
            conversations.append(self._conversation(row, first_user, []))
        return conversations

    # ---- reading everyone's feedback (for export and training) -----------------------------

    def messages(self, *, role: str | None = None) -> list[Message]:
        """Every user's messages, oldest first, optionally of one role."""
        if role is not None:
            check_choice(role, ROLES, "A role")
        with self._tables.lock:
            if role is None:
                rows = self._tables.rows("SELECT * FROM messages ORDER BY id")
            else:
                rows = self._tables.rows("SELECT * FROM messages WHERE role = ? ORDER BY id", [role])
        return [Message.from_row(r) for r in rows]

    def latest_votes(self) -> list[Vote]:
        """The vote that counts for each (user, answer): the most recent one."""
        sql = """
            SELECT * FROM votes
            WHERE id IN (SELECT max(id) FROM votes GROUP BY user, response_id)
            ORDER BY id
        """
        with self._tables.lock:
            return [Vote(**r) for r in self._tables.rows(sql)]

    def rankings(self) -> list[Ranking]:
        with self._tables.lock:
            rankings = self._tables.rows("SELECT * FROM rankings ORDER BY id")
            items = self._tables.rows("SELECT * FROM ranking_items ORDER BY ranking_id, position")
        ordered: dict[int, list[int]] = {r["id"]: [] for r in rankings}
        for item in items:
            ordered[item["ranking_id"]].append(item["response_id"])
        return [Ranking(**r, response_ids=ordered[r["id"]]) for r in rankings]

    def demonstrations(self) -> list[Demonstration]:
        with self._tables.lock:
            return [Demonstration(**r) for r in self._tables.rows("SELECT * FROM demonstrations ORDER BY id")]

    def import_keys(self) -> set[str]:
        """Keys of every imported ranking, so an importer can skip rows it has already stored."""
        with self._tables.lock:
            rows = self._tables.rows("SELECT import_key FROM rankings WHERE import_key IS NOT NULL")
        return {r["import_key"] for r in rows}

    def stats(self) -> dict[str, int]:
        with self._tables.lock:
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
        with self._tables.lock:
            return self._tables.rows(sql)[0]

    def feedback_since(self, since: str | None) -> int:
        """Votes, rankings and demonstrations recorded after `since` (an ISO UTC time; None: all)."""
        since = since or ""
        with self._tables.lock:
            return sum(
                self._tables.rows(f'SELECT count(*) AS n FROM "{table}" WHERE created_at > ?', [since])[0]["n"]
                for table in ("votes", "rankings", "demonstrations")
            )

    def feedback_per_day(self) -> list[dict[str, Any]]:
        """[{day, votes, rankings, demonstrations}] for every UTC day with feedback, oldest first."""
        days: dict[str, dict[str, Any]] = {}
        with self._tables.lock:
            for table in ("votes", "rankings", "demonstrations"):
                for r in self._tables.rows(f'SELECT substr(created_at, 1, 10) AS day, count(*) AS n FROM "{table}" '
                                           "GROUP BY day"):
                    days.setdefault(r["day"], {"day": r["day"], "votes": 0, "rankings": 0,
                                               "demonstrations": 0})[table] = r["n"]
        return [days[d] for d in sorted(days)]

    # ---- helpers ---------------------------------------------------------------------------

    def _conversation_row(self, conversation_id: int, *, user: str | None) -> dict[str, Any]:
        rows = self._tables.rows("SELECT * FROM conversations WHERE id = ?", [conversation_id])
        if not rows or (user is not None and rows[0]["user"] != user):
            raise NotFound(f"Conversation {conversation_id} does not exist.")
        return rows[0]

    def _message_row(self, message_id: int, *, user: str | None = None, noun: str = "Message") -> dict[str, Any]:
        rows = self._tables.rows("SELECT * FROM messages WHERE id = ?", [message_id])
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
        rows = self._tables.rows(f"SELECT import_key FROM rankings WHERE import_key IN ({marks})", keys)
        return {r["import_key"] for r in rows}

    def _insert_messages(self, rows: list[dict[str, Any]]) -> list[int]:
        now = self._tables.now()
        ids = [self._tables.insert("messages", {**row, "created_at": now}) for row in rows]
        self._touch(rows[0]["conversation_id"], now)
        return ids

    def _touch(self, conversation_id: int, now: str) -> None:
        self._tables.update("conversations", conversation_id, {"updated_at": now})

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
        return [Message.from_row(r) for r in self._tables.rows(sql, [message_id])]

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


def _sampling_json(sampling: dict[str, Any] | None) -> str | None:
    return None if sampling is None else json_object(sampling, "Sampling parameters")
