"""Per-user rate limits on generation requests: the chat API, and the UI's send, regenerate and
compare. One limiter is shared by the API and the UI, so a user has one budget whichever they use.
Feedback (votes, rankings, rewrites) is not limited: it costs no engine time."""

from __future__ import annotations

import math
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from serving.chat import ChatError

PERIODS = {"s": 1, "sec": 1, "second": 1, "min": 60, "minute": 60, "h": 3600, "hour": 3600, "day": 86400}
RATE_RE = re.compile(r"\s*(\d+)\s*/\s*([a-z]+?)s?\s*")
MAX_IDLE_BUCKETS = 10_000  # anonymous sessions come and go: forget full buckets past this many users
# A hard cap on memory (a bucket and its key take about 250 bytes: ~25 MB), reached only when this
# many users are all active within one refill period; past it the least recently seen is forgotten.
MAX_BUCKETS = 100_000


@dataclass(frozen=True)
class Rate:
    count: int  # requests ...
    period_s: float  # ... per this many seconds

    def __str__(self) -> str:
        unit = max((name for name, s in PERIODS.items() if s == self.period_s), key=len)  # 'minute', not 'min'
        return f"{self.count} requests per {unit}"


def parse_rate(text: str) -> Rate | None:
    """'30/min', '5/s', '500/day' -> Rate; '' -> None (no limit)."""
    if not text.strip():
        return None
    match = RATE_RE.fullmatch(text.lower())
    if not match or match.group(2) not in PERIODS or int(match.group(1)) < 1:
        raise ValueError(f"--rate-limit must look like 30/min (per s, min, hour or day); got {text!r}.")
    return Rate(int(match.group(1)), PERIODS[match.group(2)])


class RateLimited(ChatError):
    """A generation request over the user's limit: HTTP 429 with Retry-After, or a UI error."""

    def __init__(self, rate: Rate, retry_after_s: float):
        self.retry_after_s = max(1, math.ceil(retry_after_s))
        super().__init__(f"Too many requests: the limit is {rate} per user. Try again in {self.retry_after_s} s.",
                         status=429, kind="rate_limit_error")


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float  # clock reading when `tokens` was last brought up to date


class RateLimiter:
    """Owns one token bucket per user: up to `burst` requests at once, refilled at `rate`.
    `rate=None` admits everything."""

    def __init__(self, rate: Rate | None, *, burst: int = 0, clock=time.monotonic):
        self.rate = rate
        self.burst = burst or (rate.count if rate else 0)  # default: a whole period's worth at once
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()  # least recently seen user first
        self._lock = threading.Lock()  # sync Gradio handlers run in worker threads

    def admit(self, user: str) -> None:
        """Take one request from `user`'s bucket, or raise RateLimited (taking nothing)."""
        if self.rate is None:
            return
        per_s = self.rate.count / self.rate.period_s
        with self._lock:
            now = self.clock()
            bucket = self._buckets.get(user) or _Bucket(tokens=self.burst, at=now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * per_s)
            bucket.at = now
            self._buckets[user] = bucket
            self._buckets.move_to_end(user)
            if bucket.tokens < 1:
                raise RateLimited(self.rate, (1 - bucket.tokens) / per_s)
            bucket.tokens -= 1
            self._forget_idle(now, per_s)

    def _forget_idle(self, now: float, per_s: float) -> None:
        """Past MAX_IDLE_BUCKETS users, forget the least recently seen while their buckets have
        refilled (a new bucket would be the same), and past MAX_BUCKETS even if not. Only the
        oldest buckets are looked at and each one looked at but kept stops the sweep, so an
        admission costs O(1) amortised instead of a pass over every user."""
        buckets = self._buckets
        while len(buckets) > MAX_IDLE_BUCKETS:
            oldest = next(iter(buckets.values()))
            refilled = oldest.tokens + (now - oldest.at) * per_s >= self.burst
            if not refilled and len(buckets) <= MAX_BUCKETS:
                return
            buckets.popitem(last=False)
