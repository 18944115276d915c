"""A round's journal: DATA_DIR/rounds/<id>.steps.jsonl, one JSON object per line, appended by the
round process while it runs (align.round.round_progress) and read by the admin tab meanwhile
(serving.admin), so the tab shows the stages and the training curves before the round ends.

Each line is one progress call: {"at": ISO UTC time, "line": the sentence, "quiet": true for a
training step's line, "stats": {...} when the step (or stage) measured numbers}. The file is
owner-only, like the round log beside it, and log retention deletes both (loop.rounds).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from storage.permissions import private_dir, private_file

ROUNDS_DIR = "rounds"  # DATA_DIR/rounds/: each round's log (loop.rounds) and journal
JOURNAL_SUFFIX = ".steps.jsonl"


def journal_path(data_dir: str | Path, round_id: int) -> Path:
    return Path(data_dir) / ROUNDS_DIR / f"{round_id}{JOURNAL_SUFFIX}"


def append_entry(path: Path, line: str, *, quiet: bool = False, stats: dict[str, Any] | None = None) -> None:
    """One progress call as one line, written with one write() so a reader sees whole lines or none."""
    if not path.exists():
        private_dir(path.parent)
        private_file(path)
    entry = {"at": datetime.now(timezone.utc).isoformat(), "line": line, "quiet": quiet}
    if stats:
        entry["stats"] = stats
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(entry, ensure_ascii=False) + "\n")


def read_entries(path: Path) -> list[dict[str, Any]]:
    """Every whole entry so far ([] when there is no journal): a line the round is still writing,
    or one a killed round cut short, is left out."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    entries = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("line"), str):
            entries.append(entry)
    return entries
