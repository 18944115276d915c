"""Table definitions and the migrations that build them.

Each migration takes the schema from version N to N+1. They are frozen once released:
a change to the data model is a new function appended to MIGRATIONS, never an edit.
"""

from collections.abc import Callable

from sqlite_utils import Database

from .errors import StoreError

Migration = Callable[[Database], None]


def create_core_tables(db: Database) -> None:
    """v0 -> v1: conversations, the message tree, feedback tables and the adapter registry."""
    db.create_table("meta", {"key": str, "value": str}, pk="key")
    db.create_table(
        "conversations",
        {"id": int, "user": str, "title": str, "created_at": str, "updated_at": str, "source": str},
        pk="id",
        not_null=["user", "created_at", "updated_at", "source"],
    )
    db.create_table(
        "messages",
        {
            "id": int,
            "conversation_id": int,
            "parent_id": int,
            "user": str,
            "role": str,
            "content": str,
            "model": str,
            "adapter_version": int,  # NULL = the base model answered
            "sampling": str,  # JSON object of the sampling parameters
            "prompt_tokens": int,
            "completion_tokens": int,
            "latency_ms": float,
            "finish_reason": str,
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("conversation_id", "conversations", "id"), ("parent_id", "messages", "id")],
        not_null=["conversation_id", "user", "role", "content", "created_at"],
    )
    db.create_table(
        "votes",
        {
            "id": int,
            "response_id": int,
            "user": str,
            "rating": int,
            "reason": str,
            "comment": str,
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("response_id", "messages", "id")],
        not_null=["response_id", "user", "rating", "created_at"],
    )
    db.create_table(
        "rankings",
        {
            "id": int,
            "user": str,
            "prompt_id": int,
            "k": int,
            "source": str,
            "import_key": str,
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("prompt_id", "messages", "id")],
        not_null=["user", "prompt_id", "k", "source", "created_at"],
    )
    db.create_table(
        "ranking_items",
        {"ranking_id": int, "position": int, "response_id": int},
        pk=("ranking_id", "position"),
        foreign_keys=[("ranking_id", "rankings", "id"), ("response_id", "messages", "id")],
        not_null=["ranking_id", "position", "response_id"],
    )
    db.create_table(
        "demonstrations",
        {"id": int, "response_id": int, "user": str, "content": str, "created_at": str},
        pk="id",
        foreign_keys=[("response_id", "messages", "id")],
        not_null=["response_id", "user", "content", "created_at"],
    )
    db.create_table(
        "adapters",
        {
            "version": int,
            "path": str,
            "status": str,
            "base_model": str,
            "parent_version": int,
            "metrics": str,  # JSON object
            "data": str,  # JSON object describing the training data
            "created_at": str,
            "activated_at": str,
        },
        pk="version",
        foreign_keys=[("parent_version", "adapters", "version")],
        not_null=["path", "status", "base_model", "created_at"],
    )
    # A version that disappeared could be handed out again as max(version) + 1, and messages
    # already tagged with it would then point at the wrong weights.
    db.execute(
        "CREATE TRIGGER adapters_are_never_deleted BEFORE DELETE ON adapters "
        "BEGIN SELECT RAISE(ABORT, 'adapter versions are never deleted'); END"
    )
    db["conversations"].create_index(["user", "updated_at"])
    db["messages"].create_index(["conversation_id"])
    db["messages"].create_index(["parent_id"])
    db["votes"].create_index(["response_id"])
    db["rankings"].create_index(["prompt_id"])
    db["rankings"].create_index(["import_key"], unique=True)
    db["ranking_items"].create_index(["response_id"])
    db["demonstrations"].create_index(["response_id"])
    db["adapters"].create_index(["parent_version"])


def add_streaming_columns(db: Database) -> None:
    """v1 -> v2: time to first token and stream status on messages, failure reason on adapters.

    Rows written before v2 were only stored once finished, so they become 'complete'.
    """
    db["messages"].add_column("ttft_ms", float)
    db["messages"].add_column("status", str, not_null_default="complete")
    db["adapters"].add_column("error", str)


def add_rounds(db: Database) -> None:
    """v2 -> v3: alignment rounds (their log, and the one-round-at-a-time lock), and the promotion
    gate's decision, the producing round and the retention pruning on adapters.

    The lock is the one row with status 'running': it names the process that holds it (pid and the
    process's start time, so a reused pid is not mistaken for it), so a crash leaves a row the next
    claimant can recognise as dead and mark failed.
    """
    db.create_table(
        "rounds",
        {
            "id": int,
            "status": str,  # running | succeeded | failed
            "trigger": str,  # schedule | admin | cli | worker
            "requested_by": str,
            "host": str,
            "pid": int,
            "pid_start": str,  # the process's start time, from /proc: pid + start time = one process
            "started_at": str,
            "updated_at": str,  # the last sign of life (progress); rounds on other hosts go stale by it
            "finished_at": str,
            "progress": str,  # the last progress line
            "error": str,
            "adapter_version": int,
            "log_path": str,
        },
        pk="id",
        foreign_keys=[("adapter_version", "adapters", "version")],
        not_null=["status", "trigger", "started_at"],
    )
    db["rounds"].create_index(["status"])
    db.execute("CREATE UNIQUE INDEX one_running_round ON rounds(status) WHERE status = 'running'")
    db["adapters"].add_column("round_id", int)
    db["adapters"].add_column("decision", str)  # JSON: {"promote", "reasons", "by", "at"}
    db["adapters"].add_column("pruned_at", str)  # its files were deleted by retention


def add_idempotency_keys(db: Database) -> None:
    """v3 -> v4: the response each Idempotency-Key got, so a retried API write is answered from here
    instead of being written twice. A key belongs to one user; it is stored in the same transaction
    as the row it created, so a crash can never keep one without the other.
    """
    db.create_table(
        "idempotency_keys",
        {
            "user": str,
            "key": str,
            "fingerprint": str,  # sha256 of method, path and the request body: a reused key must match it
            "status": int,  # the HTTP status of the original response
            "response": str,  # JSON body of the original response
            "created_at": str,
        },
        pk=("user", "key"),
        not_null=["user", "key", "fingerprint", "status", "response", "created_at"],
    )


MIGRATIONS: list[Migration] = [create_core_tables, add_streaming_columns, add_rounds, add_idempotency_keys]
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(db: Database) -> int:
    """The version the database is at; 0 for an empty database."""
    if not db["meta"].exists():
        return 0
    rows = list(db.query("SELECT value FROM meta WHERE key = 'schema_version'"))
    return int(rows[0]["value"]) if rows else 0


def migrate(db: Database, *, target: int = SCHEMA_VERSION) -> int:
    """Apply the pending migrations up to `target` in one transaction; returns the new version.

    All steps commit together, so a failure leaves the database at the version it started from.
    """
    current = schema_version(db)
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"The database is at schema version {current}, newer than this code "
            f"understands ({SCHEMA_VERSION}); upgrade the code before opening it."
        )
    with db.atomic():
        for version in range(current, target):
            MIGRATIONS[version](db)
            db["meta"].upsert({"key": "schema_version", "value": str(version + 1)}, pk="key")
    return max(current, target)
