"""When the app starts an alignment round by itself: enough new feedback since the last round and
enough time since it started. A pure function of its inputs (the clock is passed in) so the
decision is testable without waiting."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass
class ScheduleConfig:
    every: str = field(
        default="6h",
        metadata={"help": "Least time between automatic rounds, e.g. '90m', '6h', '1d' (plain numbers are "
                          "seconds); '0' turns automatic rounds off (admins can still start one)."},
    )
    min_feedback: int = field(
        default=50,
        metadata={"help": "Fewest new votes + rankings + rewrites since the last round before an automatic one."},
    )
    check_s: float = field(
        default=30.0, metadata={"help": "Seconds between the app's checks of the schedule and of finished rounds."}
    )
    args: str = field(
        default="",
        metadata={"help": "Extra flags for every round the app starts (those of `python -m align run`), "
                          "e.g. '--ppo-total-episodes 128'."},
    )
    nice: int = field(
        default=10, metadata={"help": "CPU niceness of the round process: serving keeps priority over training."}
    )
    # A default round takes 13 min on 2 quiet CPU cores (BENCHMARKS.md) and longer beside busy
    # serving at nice 10; an hour leaves room for that while a hung round holds the one-round lock
    # (so no other round starts) for an hour at most.
    max_minutes: float = field(
        default=60.0,
        metadata={"help": "Longest a round the app started may run, in minutes; past it the round is stopped "
                          "(with every process it started) and recorded as failed. 0: no limit."},
    )
    # A log quotes users' prompts, so it should not outlive its use; 50 is over a week of rounds
    # every 6 h, and the rounds table keeps each round's outcome and last progress after its log goes.
    keep_logs: int = field(
        default=50,
        metadata={"help": "Round logs (DATA_DIR/rounds/<id>.log) kept, the newest; older ones are deleted "
                          "as a round starts. 0: keep every log."},
    )


def parse_duration(text: str) -> timedelta:
    """'90m' -> 90 minutes; '0' -> zero (off). Raises ValueError with a sentence otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(text))
    if not match:
        raise ValueError(f"--align-every must be a duration like 30m, 6h or 1d (or 0 for off); got {text!r}.")
    return timedelta(seconds=float(match[1]) * _UNITS[match[2] or "s"])


@dataclass(frozen=True)
class Due:
    due: bool
    reason: str


def round_due(*, now: datetime, last_started: datetime | None, new_feedback: int, cfg: ScheduleConfig) -> Due:
    """Whether to start an automatic round now."""
    every = parse_duration(cfg.every)
    if not every:
        return Due(False, "Automatic rounds are off (--align-every 0).")
    if new_feedback < cfg.min_feedback:
        return Due(False, f"{new_feedback} new feedback events since the last round; {cfg.min_feedback} needed.")
    if last_started is not None and now - last_started < every:
        wait = every - (now - last_started)
        return Due(False, f"The last round started {_ago(now - last_started)} ago; next one in {_ago(wait)}.")
    return Due(True, f"{new_feedback} new feedback events and "
                     f"{'no round yet' if last_started is None else 'the last round ' + _ago(now - last_started) + ' ago'}.")


def _ago(delta: timedelta) -> str:
    s = int(delta.total_seconds())
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
