"""Training rows for the alignment stages: held-out splits and caps on the pair count that never cut a
ranking in two, pairs read from JSONL files, and the conversions of export rows (storage.export) into
datasets.Dataset for TRL.

A row is a dict in TRL's conversational format: preference pairs have prompt / chosen / rejected
(chosen and rejected each one assistant message) plus a group; demonstrations have prompt / completion.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset

from storage.importer import read_pairs

Row = dict[str, Any]


class NotEnoughData(ValueError):
    """Too few rows to train on; nothing was trained or saved."""


def check_enough(rows: Sequence[Row], minimum: int, noun: str) -> None:
    if len(rows) < minimum:
        raise NotEnoughData(f"Only {len(rows)} {noun} are available; at least {minimum} are needed to train.")


def split_by_group(rows: Sequence[Row], *, eval_fraction: float, seed: int) -> tuple[list[Row], list[Row]]:
    """Split rows into (train, held_out) by whole groups, so no ranking has pairs on both sides.

    Groups are shuffled with the seed and moved to the held-out side until it holds at least
    eval_fraction of the rows. When there are two or more groups and eval_fraction > 0, each side
    keeps at least one group. Rows keep their original order within each side.
    """
    if not 0 <= eval_fraction < 1:
        raise ValueError(f"eval_fraction must be at least 0 and below 1; got {eval_fraction}.")
    sizes: dict[str, int] = {}
    for row in rows:
        sizes[row["group"]] = sizes.get(row["group"], 0) + 1
    groups = sorted(sizes)  # sorted first: the split depends on the seed, not on the order rows arrived in
    random.Random(seed).shuffle(groups)
    wanted = eval_fraction * len(rows)
    held_groups: set[str] = set()
    held = 0
    for group in groups[:-1]:  # the last group always stays in train
        if held >= wanted:
            break
        held_groups.add(group)
        held += sizes[group]
    train = [row for row in rows if row["group"] not in held_groups]
    held_out = [row for row in rows if row["group"] in held_groups]
    return train, held_out


def newest_groups(rows: Sequence[Row], *, max_pairs: int) -> list[Row]:
    """At most max_pairs rows (0: no cap), taken from the newest groups first, whole groups at a time.

    A group is as new as its newest row's created_at (storage.export sets it; rows without one count
    as oldest). Ties go to the group that comes later in `rows`: the export lists rankings oldest
    first. Groups are kept newest first until the next one would pass max_pairs; the newest group
    is kept even when it alone is larger, so a cap never leaves nothing. Rows keep their order.
    """
    if max_pairs < 0:
        raise ValueError(f"max_pairs must be 0 (no cap) or more; got {max_pairs}.")
    if max_pairs == 0 or len(rows) <= max_pairs:
        return list(rows)
    sizes = Counter(row["group"] for row in rows)
    kept: set[str] = set()
    total = 0
    for group in _newest_first(rows):
        if kept and total + sizes[group] > max_pairs:
            break  # stop here rather than fill up with older groups: what is kept is always the newest
        kept.add(group)
        total += sizes[group]
    return [row for row in rows if row["group"] in kept]


def _newest_first(rows: Sequence[Row]) -> list[str]:
    """Group names, newest first: by the newest created_at among their rows, ties by that row's position
    (later is newer). Positions are distinct, so the order never depends on how sort breaks ties."""
    newest: dict[str, tuple[str, int]] = {}
    for position, row in enumerate(rows):
        key = (row.get("created_at") or "", position)
        newest[row["group"]] = max(newest.get(row["group"], key), key)
    return sorted(newest, key=newest.__getitem__, reverse=True)


def load_pairs_file(path: str | Path) -> list[Row]:
    """Pairs from a prompt/chosen/rejected JSONL or JSONL.gz file, checked line by line like an import.

    Raises storage.errors.InvalidInput with the offending line for a bad file. Each pair's group is
    its prompt, so pairs that answer the same conversation fall on the same side of a split.
    """
    return [
        {
            "prompt": pair.prompt,
            "chosen": [{"role": "assistant", "content": pair.chosen}],
            "rejected": [{"role": "assistant", "content": pair.rejected}],
            "group": "prompt:" + _digest(pair.prompt),
            "source": "file",
        }
        for pair in read_pairs(path)
    ]


def preference_dataset(rows: Sequence[Row]) -> Dataset:
    """Conversational prompt/chosen/rejected pairs, the format TRL's RewardTrainer and DPOTrainer read."""
    return Dataset.from_dict(
        {
            "prompt": [row["prompt"] for row in rows],
            "chosen": [row["chosen"] for row in rows],
            "rejected": [row["rejected"] for row in rows],
        }
    )


def completion_dataset(rows: Sequence[Row]) -> Dataset:
    """Conversational prompt/completion rows, the format SFTTrainer trains on with completion-only loss."""
    return Dataset.from_dict(
        {
            "prompt": [row["prompt"] for row in rows],
            "completion": [row["completion"] for row in rows],
        }
    )


def _digest(prompt: list[dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps(prompt, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]
