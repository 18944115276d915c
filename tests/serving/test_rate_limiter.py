"""A per-user token bucket: a burst at once, then the configured rate; a refusal says when to retry."""

import pytest

from serving.limits import Rate, RateLimited, RateLimiter, parse_rate


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def admitted(limiter, user, times):
    ok = 0
    for _ in range(times):
        try:
            limiter.admit(user)
            ok += 1
        except RateLimited:
            pass
    return ok


@pytest.mark.parametrize("text,rate", [("30/min", Rate(30, 60)), ("5/s", Rate(5, 1)), (" 2 / hours ", Rate(2, 3600)),
                                       ("500/day", Rate(500, 86400)), ("", None)])
def test_parse_rate(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["30", "0/min", "3/fortnight", "x/min", "-1/s"])
def test_parse_rate_refuses_nonsense(text):
    with pytest.raises(ValueError, match="30/min"):
        parse_rate(text)


def test_burst_then_the_rate():
    clock = Clock()
    limiter = RateLimiter(Rate(6, 60), burst=3, clock=clock)

    assert admitted(limiter, "alice", 5) == 3
    clock.now += 10  # 6/min refills one request per 10 s
    assert admitted(limiter, "alice", 5) == 1
    clock.now += 3600  # an idle hour refills no more than the burst
    assert admitted(limiter, "alice", 10) == 3


def test_refusal_says_when_to_retry_and_takes_nothing():
    clock = Clock()
    limiter = RateLimiter(Rate(2, 60), clock=clock)
    admitted(limiter, "alice", 2)

    with pytest.raises(RateLimited) as e:
        limiter.admit("alice")
    clock.now += 29
    with pytest.raises(RateLimited):
        limiter.admit("alice")
    clock.now += 1
    limiter.admit("alice")

    assert (e.value.status, e.value.retry_after_s) == (429, 30)
    assert e.value.message == "Too many requests: the limit is 2 requests per minute per user. Try again in 30 s."


def test_users_have_separate_budgets():
    limiter = RateLimiter(Rate(1, 60), clock=Clock())

    assert [admitted(limiter, u, 3) for u in ("alice", "bob", "alice")] == [1, 1, 0]


def test_no_rate_admits_everything():
    assert admitted(RateLimiter(None), "alice", 1000) == 1000
