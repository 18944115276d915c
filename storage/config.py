"""Configuration of the storage subsystem."""

from dataclasses import dataclass, field
from pathlib import Path

DB_FILENAME = "chat.db"


@dataclass(frozen=True)
class StorageConfig:
    """Where the feedback database lives and the size limits it enforces on input."""

    data_dir: str = field(
        default="./data",
        metadata={"help": "Directory holding the SQLite database (chat.db); created if missing."},
    )
    # A long model answer is a few thousand tokens (~4 characters each); 100k characters leaves
    # room for pasted documents while keeping one row from bloating the database.
    max_message_chars: int = field(
        default=100_000,
        metadata={"help": "Longest message or demonstration accepted, in characters."},
    )
    # A reason is a short tag ("unsafe", "wrong facts"), not prose.
    max_reason_chars: int = field(
        default=200,
        metadata={"help": "Longest vote reason accepted, in characters."},
    )
    # A comment is a sentence or a paragraph explaining the vote.
    max_comment_chars: int = field(
        default=2_000,
        metadata={"help": "Longest vote comment accepted, in characters."},
    )
    # Each candidate costs a full generation; more than 8 per prompt is a client bug, not a request.
    max_answers_per_request: int = field(
        default=8,
        metadata={"help": "Most assistant answers start_answers allocates for one prompt (n)."},
    )
    # The UI compares at most four answers side by side; beyond that people rank unreliably.
    max_ranked_answers: int = field(
        default=4,
        metadata={"help": "Most answers one ranking may order (the least is always 2)."},
    )
    # Fits on one line of the conversation list.
    title_chars: int = field(
        default=60,
        metadata={"help": "Length a conversation title is cut to when taken from its first user message."},
    )
    # Clients retry a timed-out request within seconds or minutes; a week also covers one that queued
    # its writes while offline, and keeps the table from growing with every API write for ever.
    idempotency_days: float = field(
        default=7.0,
        metadata={"help": "Days the response to a request with an Idempotency-Key is kept for its retries; "
                          "a retry after that is written as a new request. 0: keep them all."},
    )
    # Each backup is a whole copy of the database: 20 bounds the folder at 20 times its size while
    # keeping weeks of daily backups. Only files named like the endpoint's backups are deleted.
    keep_backups: int = field(
        default=20,
        metadata={"help": "Backups in DATA_DIR/backups/ kept, the newest; POST /api/admin/backup deletes older "
                          "ones after a backup succeeds. 0: keep every backup."},
    )
    # The trainer reads the same file while the server writes; wait for its lock instead of failing.
    busy_timeout_s: float = field(
        default=5.0,
        metadata={"help": "Seconds to wait for another process's lock on the database before failing."},
    )


def db_path(data_dir: str | Path) -> Path:
    """The database file inside a data directory."""
    return Path(data_dir) / DB_FILENAME
