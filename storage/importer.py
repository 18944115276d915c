"""Import preference pairs from JSONL (or JSONL.gz) in TRL's conversational prompt/chosen/rejected format.

Each pair becomes an 'import' conversation: the prompt turns as a message chain, the two answers
under its last user message, and a ranking [chosen, rejected]. A ranking's import_key is the
SHA-256 of the row's canonical JSON, so importing a file again adds nothing twice.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidInput, StoreError
from .store import ROLES, FeedbackStore

IMPORT_MODEL = "import"  # stands in for the model name on answers that came from a file
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class PairRow:
    line: int  # 1-based line number in the file, for error messages
    prompt: list[dict[str, str]]
    chosen: str
    rejected: str
    import_key: str


def import_pairs(store: FeedbackStore, path: str | Path, *, user: str = "import") -> dict[str, int]:
    """Read a whole file, then store its new pairs in one transaction; returns imported/skipped counts."""
    return store_pairs(store, read_pairs(path), user=user)


def read_pairs(path: str | Path) -> list[PairRow]:
    """Parse and check every line before anything is written; the first bad line raises."""
    path = Path(path)
    rows = []
    for number, line in enumerate(_read_lines(path), start=1):
        if line.strip():
            rows.append(parse_pair(line, line=number, filename=path.name))
    return rows


def parse_pair(text: str, *, line: int, filename: str) -> PairRow:
    where = f"Line {line} of {filename}"
    try:
        row = json.loads(text)
    except json.JSONDecodeError:
        raise InvalidInput(f"{where} is not valid JSON.") from None
    if not isinstance(row, dict):
        raise InvalidInput(f"{where} must be a JSON object with prompt, chosen and rejected.")
    prompt = _turns(row.get("prompt"), where=where, field="prompt")
    if not prompt or prompt[-1]["role"] != "user":
        raise InvalidInput(f"{where}: the prompt must be a list of messages ending with a user message.")
    return PairRow(
        line=line,
        prompt=prompt,
        chosen=_answer(row.get("chosen"), where=where, field="chosen"),
        rejected=_answer(row.get("rejected"), where=where, field="rejected"),
        import_key=hashlib.sha256(_canonical_json(row).encode()).hexdigest(),
    )


def store_pairs(store: FeedbackStore, rows: list[PairRow], *, user: str = "import") -> dict[str, int]:
    """Store the pairs not imported before, all in one transaction: any error writes none of them."""
    imported = skipped = 0
    with store.transaction():
        seen = store.import_keys()
        for row in rows:
            if row.import_key in seen:
                skipped += 1
                continue
            try:
                store_pair(store, row, user=user)
            except StoreError as error:
                raise InvalidInput(f"Line {row.line}: {error}") from error
            seen.add(row.import_key)
            imported += 1
    return {"imported": imported, "skipped": skipped}


def store_pair(store: FeedbackStore, row: PairRow, *, user: str) -> int:
    """Write one pair as a conversation with a two-answer ranking; returns the ranking id."""
    conversation_id = store.create_conversation(user=user, source="import")
    parent_id = None
    for turn in row.prompt:
        model = IMPORT_MODEL if turn["role"] == "assistant" else None
        parent_id = store.record_message(
            conversation_id=conversation_id, user=user, parent_id=parent_id, model=model, **turn
        )
    answer_ids = [
        store.record_message(
            conversation_id=conversation_id,
            user=user,
            parent_id=parent_id,
            role="assistant",
            content=content,
            model=IMPORT_MODEL,
        )
        for content in (row.chosen, row.rejected)
    ]
    return store.record_ranking(user=user, response_ids=answer_ids, source="import", import_key=row.import_key)


def _read_lines(path: Path) -> list[str]:
    try:
        raw = path.read_bytes()
        # Sniff rather than trust the suffix: a renamed file still imports.
        if raw.startswith(GZIP_MAGIC):
            raw = gzip.decompress(raw)
        return raw.decode("utf-8").splitlines()
    except FileNotFoundError:
        raise InvalidInput(f"The file {path} does not exist.") from None
    except OSError as error:
        raise InvalidInput(f"Could not read {path}: {error.strerror or error}.") from None
    except (EOFError, UnicodeDecodeError):
        raise InvalidInput(f"Could not read {path}: it is not UTF-8 JSONL or gzip-compressed JSONL.") from None


def _turns(value: Any, *, where: str, field: str) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise InvalidInput(f"{where}: '{field}' must be a list of messages.")
    turns = []
    for turn in value:
        if not (isinstance(turn, dict) and turn.get("role") in ROLES and isinstance(turn.get("content"), str)):
            raise InvalidInput(
                f"{where}: every '{field}' message needs a role (system, user or assistant) and text content."
            )
        turns.append({"role": turn["role"], "content": turn["content"]})
    return turns


def _answer(value: Any, *, where: str, field: str) -> str:
    turns = _turns(value, where=where, field=field)
    if len(turns) != 1 or turns[0]["role"] != "assistant":
        raise InvalidInput(f"{where}: '{field}' must hold exactly one assistant message.")
    return turns[0]["content"]


def _canonical_json(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
