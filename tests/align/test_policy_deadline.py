"""A stage's deadline stops a run before a step that would pass it, at the pace of the steps so far, rather
than after the step that passed it (up to a whole step late: a KTO round ran 15.3 minutes). Without a pace
yet (after the first step) only a deadline already passed stops it; without a budget nothing does."""

import pytest

from align import policy
from align.distributed import Ranks


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(policy.time, "monotonic", clock)
    return clock


def steps_until_stop(deadline, clock, step_s: list[float]) -> list[float]:
    """Run steps of the given lengths (the first one also holds the set-up) until the deadline says stop;
    the times at which each step ended, relative to the start."""
    start, ended = clock.now, []
    for s in step_s:
        clock.now += s
        ended.append(clock.now - start)
        if deadline():
            break
    return ended


def test_it_stops_before_the_step_that_would_pass_it(clock):
    deadline = policy.Deadline(100.0, Ranks())
    # Set-up and first step 20 s, then 30 s a step: after 80 s a fourth step would end at 110.
    assert steps_until_stop(deadline, clock, [20.0, 30.0, 30.0, 30.0, 30.0]) == [20.0, 50.0, 80.0]


def test_the_first_step_runs_and_a_spent_budget_stops_after_it(clock):
    assert steps_until_stop(policy.Deadline(0.0, Ranks()), clock, [5.0, 5.0]) == [5.0]
    assert steps_until_stop(policy.Deadline(60.0, Ranks()), clock, [10.0, 10.0, 10.0]) == [10.0, 20.0, 30.0]


def test_without_a_budget_it_never_stops(clock):
    deadline = policy.Deadline(None, Ranks())
    assert steps_until_stop(deadline, clock, [1e6] * 3) == [1e6, 2e6, 3e6]
