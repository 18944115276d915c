"""The rate limiter's per-user buckets: admissions past many users do not rebuild the table (each
costs O(1) amortised), idle users are forgotten, and a hard cap bounds memory when no one is idle."""

import pytest

from serving import limits
from serving.limits import Rate, RateLimited, RateLimiter


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_twenty_thousand_users_never_rebuild_the_table():
    limiter = RateLimiter(Rate(30, 60), clock=Clock())
    limiter.admit("user-0")
    table = limiter._buckets

    for i in range(1, 20_000):
        limiter.admit(f"user-{i}")
        assert limiter._buckets is table, f"rebuilt at user {i}"
    assert len(table) == 20_000  # no one is idle yet, and the hard cap is far away


def test_idle_users_are_forgotten_oldest_first(monkeypatch):
    monkeypatch.setattr(limits, "MAX_IDLE_BUCKETS", 3)
    clock = Clock()
    limiter = RateLimiter(Rate(1, 1), clock=clock)
    for user in ("a", "b", "c"):
        limiter.admit(user)
    clock.now += 10  # every bucket has refilled
    limiter.admit("d")
    limiter.admit("e")

    assert list(limiter._buckets) == ["c", "d", "e"]


def test_memory_is_bounded_when_no_one_is_idle(monkeypatch):
    monkeypatch.setattr(limits, "MAX_IDLE_BUCKETS", 10)
    monkeypatch.setattr(limits, "MAX_BUCKETS", 100)
    limiter = RateLimiter(Rate(1, 3600), clock=Clock())
    for i in range(1000):
        limiter.admit(f"user-{i}")

    assert len(limiter._buckets) == 100
    with pytest.raises(RateLimited):  # the recent users are still held to their limit
        limiter.admit("user-999")
