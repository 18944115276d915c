"""Turn stored feedback into training rows in TRL's conversational formats.

Every prompt is the context the model saw: the system prompt, earlier turns and the user message.
Answers that did not finish (status other than 'complete') or are empty never become training data.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import cache
from itertools import combinations
from pathlib import Path
from typing import Any

from .store import FeedbackStore, Message, Vote

Row = dict[str, Any]
Chat = list[dict[str, str]]
EXPORT_FILES = {"pairs": "pairs.jsonl", "prompts": "prompts.jsonl", "sft": "sft.jsonl", "kto": "kto.jsonl"}


def preference_pairs(store: FeedbackStore) -> list[Row]:
    """Every chosen/rejected pair: rankings first, then thumbs, then demonstrations. Each pair's
    created_at is when the feedback behind it was given, so a trainer can keep the newest first
    (the order here is by kind, not by time)."""
    answers = _answers(store)
    prompt_of = _prompt_lookup(store)
    return (
        ranking_pairs(store, answers, prompt_of)
        + thumbs_pairs(store, answers, prompt_of)
        + demonstration_pairs(store, answers, prompt_of)
    )


def ranking_pairs(store: FeedbackStore, answers: dict[int, Message], prompt_of: Callable[[int], Chat]) -> list[Row]:
    """A ranking of K answers gives all C(K, 2) pairs; the better-placed answer is chosen."""
    rows = []
    for ranking in store.rankings():
        for better, worse in combinations(ranking.response_ids, 2):
            chosen, rejected = answers.get(better), answers.get(worse)
            if _usable(chosen) and _usable(rejected):
                prompt = prompt_of(ranking.prompt_id)
                rows.append(_pair(prompt, chosen.content, rejected.content, f"ranking:{ranking.id}", "ranking",
                                  ranking.created_at))
    return rows


def thumbs_pairs(store: FeedbackStore, answers: dict[int, Message], prompt_of: Callable[[int], Chat]) -> list[Row]:
    """Per prompt, every thumbs-up answer is preferred over every thumbs-down answer. A pair is as new
    as the later of its two votes: it exists from then on."""
    rows = []
    votes = store.latest_votes()  # read once: both the pairs and their times come from these votes
    voted_at = _voted_at(votes)
    for prompt_id, (ups, downs) in sorted(_thumbs_by_prompt(votes, answers).items()):
        for up in sorted(ups):
            for down in sorted(downs - {up}):
                chosen, rejected = answers[up].content, answers[down].content
                created_at = max(voted_at[up], voted_at[down])
                rows.append(_pair(prompt_of(prompt_id), chosen, rejected, f"prompt:{prompt_id}", "thumbs",
                                  created_at))
    return rows


def demonstration_pairs(
    store: FeedbackStore, answers: dict[int, Message], prompt_of: Callable[[int], Chat]
) -> list[Row]:
    """A user-written answer is preferred over the model answer it replaced."""
    rows = []
    for demo in store.demonstrations():
        replaced = answers.get(demo.response_id)
        if _usable(replaced) and replaced.parent_id is not None:
            prompt = prompt_of(replaced.parent_id)
            group = f"prompt:{replaced.parent_id}"
            rows.append(_pair(prompt, demo.content, replaced.content, group, "demonstration", demo.created_at))
    return rows


def prompts(store: FeedbackStore) -> list[Row]:
    """Distinct user prompts with their context, newest first (inputs for on-policy training)."""
    prompt_of = _prompt_lookup(store)
    seen: set[str] = set()
    rows = []
    for message in reversed(store.messages(role="user")):
        prompt = prompt_of(message.id)
        key = json.dumps(prompt, sort_keys=True)
        if key not in seen:
            seen.add(key)
            rows.append({"prompt": prompt})
    return rows


def demonstrations(store: FeedbackStore) -> list[Row]:
    """User-written answers as supervised prompt/completion rows."""
    answers = _answers(store)
    prompt_of = _prompt_lookup(store)
    rows = []
    for demo in store.demonstrations():
        replaced = answers.get(demo.response_id)
        if replaced is not None and replaced.parent_id is not None:
            rows.append({"prompt": prompt_of(replaced.parent_id), "completion": _assistant(demo.content)})
    return rows


def kto_rows(store: FeedbackStore) -> list[Row]:
    """Thumbs that found no opposite vote on the same prompt, as unpaired KTO examples."""
    answers = _answers(store)
    prompt_of = _prompt_lookup(store)
    rows = []
    for prompt_id, (ups, downs) in sorted(_thumbs_by_prompt(store.latest_votes(), answers).items()):
        # An answer was paired if its prompt has an answer with the opposite vote.
        unpaired = [(a, True) for a in sorted(ups) if not downs - {a}]
        unpaired += [(a, False) for a in sorted(downs) if not ups - {a}]
        for answer_id, label in unpaired:
            completion = _assistant(answers[answer_id].content)
            rows.append({"prompt": prompt_of(prompt_id), "completion": completion, "label": label})
    return rows


def export_datasets(store: FeedbackStore) -> dict[str, list[Row]]:
    """Every training dataset by name (the keys of EXPORT_FILES)."""
    return {
        "pairs": preference_pairs(store),
        "prompts": prompts(store),
        "sft": demonstrations(store),
        "kto": kto_rows(store),
    }


def export_size_bound(store: FeedbackStore) -> int:
    """At most this many rows in export_datasets(store), from COUNT queries alone: refusing an
    export that is too large should not cost building it first. Exact, except where answers are
    unusable (unfinished, empty) or prompts repeat: the export then has fewer rows."""
    c = store.feedback_counts()
    pairs = c["ranking_pairs"] + c["thumbs_pairs"] + c["demonstrations"]
    return pairs + c["user_messages"] + c["demonstrations"] + c["unpaired_thumbs"]  # + prompts, sft, kto


def export_all(store: FeedbackStore, out_dir: str | Path) -> dict[str, int]:
    """Write pairs.jsonl, prompts.jsonl, sft.jsonl and kto.jsonl; returns the row count of each."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    datasets = export_datasets(store)
    for name, rows in datasets.items():
        write_jsonl(out / EXPORT_FILES[name], rows)
    return {name: len(rows) for name, rows in datasets.items()}


def write_jsonl(path: Path, rows: list[Row]) -> None:
    """Write rows one JSON object per line; readers never see a half-written file."""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(partial, path)


def _answers(store: FeedbackStore) -> dict[int, Message]:
    return {m.id: m for m in store.messages(role="assistant")}


def _prompt_lookup(store: FeedbackStore) -> Callable[[int], Chat]:
    """store.context, cached: many pairs share a prompt. Each call returns a fresh copy so that
    editing one exported row cannot change another."""

    @cache
    def frozen_context(message_id: int) -> tuple[tuple[tuple[str, str], ...], ...]:
        return tuple(tuple(turn.items()) for turn in store.context(message_id))

    def prompt_of(message_id: int) -> Chat:
        return [dict(turn) for turn in frozen_context(message_id)]

    return prompt_of


def _thumbs_by_prompt(votes: list[Vote], answers: dict[int, Message]) -> dict[int, tuple[set[int], set[int]]]:
    """prompt id -> (answers whose latest vote is up, answers whose latest vote is down)."""
    by_prompt: dict[int, tuple[set[int], set[int]]] = {}
    for vote in votes:
        answer = answers.get(vote.response_id)
        if _usable(answer) and answer.parent_id is not None:
            ups, downs = by_prompt.setdefault(answer.parent_id, (set(), set()))
            (ups if vote.rating == 1 else downs).add(answer.id)
    return by_prompt


def _voted_at(votes: list[Vote]) -> dict[int, str]:
    """answer id -> when the newest of the votes that count for it (one per user) was cast."""
    voted_at: dict[int, str] = {}
    for vote in votes:
        voted_at[vote.response_id] = max(voted_at.get(vote.response_id, ""), vote.created_at)
    return voted_at


def _usable(answer: Message | None) -> bool:
    return answer is not None and answer.status == "complete" and answer.content.strip() != ""


def _assistant(content: str) -> Chat:
    return [{"role": "assistant", "content": content}]


def _pair(prompt: Chat, chosen: str, rejected: str, group: str, source: str, created_at: str) -> Row:
    return {
        "prompt": prompt,
        "chosen": _assistant(chosen),
        "rejected": _assistant(rejected),
        "group": group,
        "source": source,
        "created_at": created_at,
    }
