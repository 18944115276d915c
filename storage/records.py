"""The rows the storage classes hand out: frozen dataclasses, one per table (a conversation with its
messages, a ranking with its answers), read-only for every caller."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .process import ProcessIdentity


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
