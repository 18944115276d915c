"""Password logins, by HTTP Basic auth on the API and by the UI's login form, and the throttle on
failed ones.

After MAX_FAILURES failed logins within WINDOW_S for one user, or from one client address, further
attempts for that user or from that address are refused for FIRST_BACKOFF_S; every further failure
doubles the back-off, up to MAX_BACKOFF_S, until a successful login (for the user) or an hour
without failures. A refusal is a 429 with Retry-After on the API and a failed login in the UI,
whatever the password: a locked account cannot be used to test passwords.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict
from contextvars import ContextVar
from dataclasses import dataclass

from serving.chat import ChatError
from serving.limits import RateLimited
from serving.passwords import is_hashed, password_matches

log = logging.getLogger(__name__)

MAX_FAILURES = 5  # a typo or two, a forgotten caps lock, then stop
WINDOW_S = 15 * 60.0  # failures further apart than this are forgiven
FIRST_BACKOFF_S = 60.0
MAX_BACKOFF_S = 15 * 60.0  # steady state: one guess per user per 15 min, 96 a day
FORGET_AFTER_S = 3600.0  # a record idle this long (and not locked) is dropped, back-off and all
MAX_ADDRESSES = 10_000  # client addresses remembered at most; user records are bounded by the --auth users


class LoginLocked(RateLimited):
    """Too many failed logins: the API answers 429 with Retry-After through RateLimited's handler."""

    def __init__(self, retry_after_s: float):
        # Not RateLimited.__init__: its sentence is about a generation rate, not about logins.
        self.retry_after_s = max(1, math.ceil(retry_after_s))
        ChatError.__init__(self, f"Too many failed logins for this user or from this address. "
                                 f"Try again in {self.retry_after_s} s.", status=429, kind="rate_limit_error")


@dataclass
class _Record:
    window_start: float  # clock reading of the first failure counted in `failures`
    last_failure: float
    failures: int = 0
    strikes: int = 0  # lock-outs so far: the next one lasts FIRST_BACKOFF_S * 2**strikes
    locked_until: float = 0.0


class LoginThrottle:
    """Owns the failed-login records of each user and each client address. `clock` is injectable so
    tests step through the back-off without waiting."""

    def __init__(self, *, max_failures: int = MAX_FAILURES, clock=time.monotonic):
        self.max_failures = max_failures  # 0: never lock (an operator's choice, e.g. behind an SSO proxy)
        self.clock = clock
        self._users: dict[str, _Record] = {}
        self._addresses: OrderedDict[str, _Record] = OrderedDict()  # oldest failure first
        self._lock = threading.Lock()  # the login form's callback and API requests run on different threads

    def retry_after(self, user: str | None, address: str | None) -> float:
        """Seconds until `user` and `address` may try again; 0 when neither is locked."""
        with self._lock:
            now = self.clock()
            records = [r for r in (self._users.get(user), self._addresses.get(address)) if r is not None]
            return max([0.0, *(r.locked_until - now for r in records)])

    def failed(self, user: str | None, address: str | None) -> None:
        """Count a failed login. `user` None: not one of the --auth users, so only the address counts
        (guessed names must not fill the memory)."""
        with self._lock:
            now = self.clock()
            if user is not None:
                self._count(self._users, user, now, what=f"user {user!r}")
            if address is not None:
                self._count(self._addresses, address, now, what=f"address {address}")
                self._addresses.move_to_end(address)
            self._forget_idle(now)

    def succeeded(self, user: str) -> None:
        """A correct password ends the user's back-off; the address keeps its count, or one valid
        account would let a guesser reset its address between guesses at others."""
        with self._lock:
            self._users.pop(user, None)

    def _count(self, records: dict[str, _Record], key: str, now: float, *, what: str) -> None:
        record = records.get(key)
        if record is None or (record.strikes == 0 and now - record.window_start > WINDOW_S):
            record = records[key] = _Record(window_start=now, last_failure=now)
        record.failures += 1
        record.last_failure = now
        if self.max_failures and record.failures >= self.max_failures:
            backoff = min(FIRST_BACKOFF_S * 2 ** record.strikes, MAX_BACKOFF_S)
            record.strikes += 1
            record.locked_until = now + backoff
            log.warning("Logins for %s refused for %d s after %d failed attempts.", what, backoff, record.failures)

    def _forget_idle(self, now: float) -> None:
        """Drop address records idle past FORGET_AFTER_S, then the oldest beyond MAX_ADDRESSES."""
        while self._addresses:
            record = next(iter(self._addresses.values()))
            idle = now - record.last_failure > FORGET_AFTER_S and now >= record.locked_until
            if not idle and len(self._addresses) <= MAX_ADDRESSES:
                break
            self._addresses.popitem(last=False)
        for user in [u for u, r in self._users.items() if now - r.last_failure > FORGET_AFTER_S
                     and now >= r.locked_until]:
            del self._users[user]


# The client address of the HTTP request being handled. Gradio calls an auth function with the user name and
# password only (gradio/routes.py, `login`: `app.auth(username, password)`), so the address reaches
# Logins.gradio_login through this context variable, which RememberClientAddress sets around every request:
# the login route calls the function in the request's own task, where the variable holds its address.
_client_address: ContextVar[str | None] = ContextVar("client_address", default=None)


class RememberClientAddress:
    """ASGI middleware that makes each request's client address known to Logins.gradio_login."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        token = _client_address.set(client_address(scope))
        try:
            await self.app(scope, receive, send)
        finally:
            _client_address.reset(token)


def client_address(scope) -> str | None:
    """The peer's IP address (uvicorn has already applied X-Forwarded-For from a trusted proxy)."""
    client = scope.get("client")
    return client[0] if client else None


class Logins:
    """Checks the --auth users' passwords ({user: plain or hashed password}) under the login throttle;
    remembers which hashed passwords it has verified, so a Basic-auth API client does not pay for a
    slow hash on every request."""

    def __init__(self, users: dict[str, str], *, throttle: LoginThrottle | None = None):
        self.users = users
        self.throttle = throttle or LoginThrottle()
        # sha256(stored hash, password) of each password verified since start: at most one per user, as the
        # users file is read once. Keyed by the stored hash too, so it only ever counts for its own user.
        self._verified: set[bytes] = set()

    def check(self, user: str, password: str, address: str | None) -> bool:
        """Is this the user's password? Raises LoginLocked while the user or the address is locked."""
        wait = self.throttle.retry_after(user, address)
        if wait > 0:
            raise LoginLocked(wait)
        stored = self.users.get(user)
        if stored is not None and self._matches(stored, password):
            self.throttle.succeeded(user)
            return True
        self.throttle.failed(user if stored is not None else None, address)
        return False

    def gradio_login(self, username: str, password: str) -> bool:
        """The UI login form's auth function: a locked user or address simply fails to log in."""
        try:
            return self.check(username, password, _client_address.get())
        except LoginLocked:
            return False

    def _matches(self, stored: str, password: str) -> bool:
        if not is_hashed(stored):
            return password_matches(stored, password)
        key = hashlib.sha256(stored.encode() + b"\0" + password.encode()).digest()
        if key in self._verified:
            return True
        ok = password_matches(stored, password)
        if ok:
            self._verified.add(key)  # set.add is atomic under the GIL: no lock needed
        return ok
