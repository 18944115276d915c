"""A second app for the access tests that need flags the shared `app_server` must not have:
API keys (--api-keys) and a tight per-user rate limit (--rate-limit)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from serving.keys import add_key
from tests.conftest import AppProcess

GUARDED_USERS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}
RATE_LIMIT = "2/hour"  # small enough that a test reaches it, slow enough that it never refills mid-test


@dataclass
class GuardedApp:
    app: AppProcess
    keys: dict[str, str]  # user -> the API key made for them

    @property
    def url(self) -> str:
        return self.app.url


@pytest.fixture(scope="session")
def guarded_app(model_path, tmp_path_factory):
    """app.py with --auth alice,bob,carol (alice admin), an --api-keys file with a key for alice and
    bob, and --rate-limit 2/hour per user."""
    data_dir = tmp_path_factory.mktemp("guarded")
    key_file = data_dir / "api-keys.txt"
    keys = {user: add_key(key_file, user) for user in ("alice", "bob")}
    auth = ",".join(f"{u}:{p}" for u, p in GUARDED_USERS.items())
    app = AppProcess(data_dir=data_dir, model_path=model_path,
                     extra=["--auth", auth, "--admin", "alice", "--api-keys", str(key_file),
                            "--rate-limit", RATE_LIMIT, "--max-tokens", "8", "--max-tokens-limit", "16"])
    try:
        app.wait_ready()
        yield GuardedApp(app=app, keys=keys)
    finally:
        app.stop()
