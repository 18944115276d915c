"""When the app starts a round by itself, decided with an injected clock."""

from datetime import datetime, timedelta, timezone

import pytest

from loop.schedule import ScheduleConfig, parse_duration, round_due

NOW = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
CFG = ScheduleConfig(every="6h", min_feedback=50)


def test_enough_feedback_and_no_round_yet_starts_one():
    assert round_due(now=NOW, last_started=None, new_feedback=50, cfg=CFG).due


def test_too_little_new_feedback_waits():
    due = round_due(now=NOW, last_started=None, new_feedback=49, cfg=CFG)
    assert not due.due and "49 new feedback events" in due.reason


def test_too_soon_after_the_last_round_waits_until_the_interval_has_passed():
    last = NOW - timedelta(hours=5, minutes=30)
    due = round_due(now=NOW, last_started=last, new_feedback=500, cfg=CFG)
    assert not due.due and "next one in 0m" not in due.reason and "30m00s" in due.reason
    assert round_due(now=NOW + timedelta(minutes=30), last_started=last, new_feedback=500, cfg=CFG).due


def test_zero_turns_automatic_rounds_off():
    due = round_due(now=NOW, last_started=None, new_feedback=10_000, cfg=ScheduleConfig(every="0"))
    assert not due.due and "off" in due.reason


@pytest.mark.parametrize("text, seconds", [("90m", 5400), ("6h", 21600), ("1d", 86400), ("45", 45), ("0", 0),
                                           ("1.5h", 5400)])
def test_durations(text, seconds):
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "6 hours", "-1h", "h"])
def test_bad_durations_are_refused_with_a_sentence(text):
    with pytest.raises(ValueError, match="--align-every must be a duration"):
        parse_duration(text)
