"""Five failed logins lock the user and the client address out for a minute, then each further failure
doubles the back-off up to 15 minutes; the API answers a locked login with a 429 and Retry-After."""

import base64

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from serving.api import Auth, install_error_handlers
from serving.logins import MAX_ADDRESSES, LoginThrottle, Logins

USERS = {"alice": "right", "bob": "bobs"}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def api(auth: Auth) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/whoami")
    def whoami(request: Request):
        return {"user": auth.user(request)}

    return app


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_five_failures_lock_out_then_the_back_off_ends():
    clock = Clock()
    app = api(Auth(USERS, logins=Logins(USERS, throttle=LoginThrottle(clock=clock))))
    attacker, other = TestClient(app, client=("10.0.0.1", 1234)), TestClient(app, client=("10.0.0.2", 1234))

    assert [attacker.get("/whoami", headers=basic("alice", f"guess{i}")).status_code for i in range(5)] == [401] * 5
    locked = attacker.get("/whoami", headers=basic("alice", "right"))
    assert locked.status_code == 429 and locked.headers["Retry-After"] == "60"
    assert locked.json()["error"]["message"] == ("Too many failed logins for this user or from this address. "
                                                 "Try again in 60 s.")
    assert other.get("/whoami", headers=basic("alice", "right")).status_code == 429  # the user is locked
    assert other.get("/whoami", headers=basic("bob", "bobs")).json() == {"user": "bob"}

    clock.now += 60
    assert attacker.get("/whoami", headers=basic("alice", "right")).json() == {"user": "alice"}


def test_each_further_failure_doubles_the_back_off_up_to_15_minutes():
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(5):
        throttle.failed("alice", "10.0.0.1")

    waits = [throttle.retry_after("alice", None)]
    for _ in range(6):
        clock.now += waits[-1]
        throttle.failed("alice", None)
        waits.append(throttle.retry_after("alice", None))

    assert waits == [60, 120, 240, 480, 900, 900, 900]
    throttle.succeeded("alice")
    assert throttle.retry_after("alice", None) == 0
    throttle.failed(None, "10.0.0.1")  # a login that works does not clear the address's record
    assert throttle.retry_after(None, "10.0.0.1") == 120


def test_unknown_users_count_only_against_their_address_and_addresses_are_capped():
    clock = Clock()
    logins = Logins(USERS, throttle=LoginThrottle(clock=clock))
    for i in range(MAX_ADDRESSES + 10):
        logins.check(f"nobody{i}", "x", f"10.1.{i // 256}.{i % 256}")

    assert logins.throttle._users == {}
    assert len(logins.throttle._addresses) == MAX_ADDRESSES


def test_records_idle_for_an_hour_are_forgotten():
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(5):
        throttle.failed("alice", "10.0.0.1")

    clock.now += 3601
    throttle.failed(None, "10.0.0.2")

    assert (list(throttle._users), list(throttle._addresses)) == ([], ["10.0.0.2"])


def test_max_failures_zero_never_locks():
    throttle = LoginThrottle(max_failures=0)
    for _ in range(50):
        throttle.failed("alice", "10.0.0.1")

    assert throttle.retry_after("alice", "10.0.0.1") == 0
