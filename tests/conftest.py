"""Shared fixtures: the prepared default model, one real vLLM engine per test session (in a
background event loop), one running app.py per test session on a free local port, and random PEFT
adapters made once per seed.

Tests run grouped by the expensive thing they use (see `resource_rank`): first those that need no
model, then in-process training on the model, then the tests of the shared engine, then those of the
shared app, then the tests that start processes of their own. Each shared engine or app stops right
after the last test that needs it, so none sits in memory beside the processes later tests start."""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path
from typing import Callable

import httpx
import pytest

from bench.common import KV_CACHE_GIB, AppProcess

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
USERS = {"alice": "alice-pw", "bob": "bob-pw"}


@pytest.fixture(scope="session")
def model_path() -> str:
    """The default model, prepared once into ./data (make run reuses it)."""
    from common.models import prepare_default_model

    return str(prepare_default_model(REPO / "data"))


class EngineRunner:
    """A real serving.engine.Engine living in its own event loop thread, so synchronous tests can
    run coroutines on it (`runner.run(coro)`)."""

    def __init__(self, model_path: str):
        from serving.config import EngineConfig

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._stop = asyncio.Event()
        self._ready = threading.Event()
        self.engine = None
        self.error: BaseException | None = None
        cfg = EngineConfig(kv_cache_gib=int(KV_CACHE_GIB), max_num_seqs=16)
        self._task = asyncio.run_coroutine_threadsafe(self._main(cfg, model_path), self.loop)

    async def _main(self, cfg, model_path):
        from serving.engine import Engine

        try:
            async with Engine.start(cfg, model_path=model_path, served_name="SmolLM2-135M-Instruct") as engine:
                self.engine = engine
                self._ready.set()
                self._stop_async = asyncio.Event()
                await self._stop_async.wait()
        except BaseException as e:  # surfaced to the test that waits for the engine
            self.error = e
            self._ready.set()

    def wait(self, timeout=600):
        self._ready.wait(timeout)
        if self.error:
            raise self.error
        return self.engine

    def run(self, coro, timeout=300):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self):
        """Stop the engine and its loop; a second call does nothing."""
        if self.loop.is_closed() or not self.thread.is_alive():
            return
        if self.engine is not None:
            self.loop.call_soon_threadsafe(self._stop_async.set)
            self._task.result(120)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


@pytest.fixture(scope="session")
def engine_runner(model_path):
    runner = EngineRunner(model_path)
    runner.wait()
    _LIVE["engine_runner"] = runner.close
    yield runner
    runner.close()


@pytest.fixture(scope="session")
def app_server(model_path, tmp_path_factory):
    """One app.py for every end-to-end test: --auth alice and bob (alice is admin), and an --api-keys
    file with a key for each (`app_server.keys[user]`)."""
    from serving.keys import add_key

    data_dir = tmp_path_factory.mktemp("appdata")
    auth = ",".join(f"{u}:{p}" for u, p in USERS.items())
    key_file = data_dir / "api-keys.txt"
    keys = {user: add_key(key_file, user) for user in USERS}
    app = AppProcess(data_dir=data_dir, model_path=model_path,
                     # The access tests send dozens of wrong passwords from this one address on purpose;
                     # the login throttle has tests of its own (tests/serving/test_login_throttle.py).
                     extra=["--auth", auth, "--admin", "alice", "--api-keys", str(key_file),
                            "--max-tokens", "32", "--max-tokens-limit", "256", "--login-max-failures", "0"])
    app.keys = keys  # user -> the API key made for them
    try:
        app.wait_ready()
        _LIVE["app_server"] = app.stop
        yield app
    finally:
        app.stop()


@pytest.fixture
def alice(app_server) -> httpx.Client:
    with httpx.Client(base_url=app_server.url, auth=("alice", USERS["alice"]), timeout=120) as c:
        yield c


@pytest.fixture
def bob(app_server) -> httpx.Client:
    with httpx.Client(base_url=app_server.url, auth=("bob", USERS["bob"]), timeout=120) as c:
        yield c


# ------------------------------------------------------------------ ordering and early teardown

_LIVE: dict[str, Callable[[], None]] = {}  # session resource -> its stop(), while it runs
_OWN_PROCESSES = ("e2e", "scaleout")  # folders whose model tests start app.py / vllm serve themselves


def resource_rank(item: pytest.Item) -> int:
    """0: no model; 1: trains on the model in-process; 2: the shared engine; 3: the shared app;
    4: starts its own app or replicas (after the shared engine and app have stopped)."""
    names = item.fixturenames
    if "engine_runner" in names:
        return 2
    if "app_server" in names:
        return 3
    if "model_path" not in names:
        return 0
    return 4 if Path(item.path).parent.name in _OWN_PROCESSES else 1


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=resource_rank)  # stable: file order within a group


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    yield
    items = item.session.items
    later = items[items.index(item) + 1:] if nextitem is not None else []
    for name in list(_LIVE):
        if not any(name in other.fixturenames for other in later):
            _LIVE.pop(name)()  # no later test needs it: stop it now, not at the end of the session


@pytest.fixture(scope="session")
def random_adapter(model_path, tmp_path_factory) -> Callable[..., str]:
    """random_adapter(out_dir, seed=0): a copy of the session's random adapter for that seed in
    out_dir (tests may damage their copy); each seed's adapter is made once per session by
    bench/swap.py's maker (a LoRA with random B matrices, so it visibly changes the answer)."""
    from bench.swap import make_adapter

    made: dict[int, str] = {}
    root = tmp_path_factory.mktemp("random-adapters")

    def copy(out_dir: Path, seed: int = 0) -> str:
        if seed not in made:
            made[seed] = make_adapter(model_path, root / str(seed), seed=seed)
        shutil.copytree(made[seed], out_dir)
        return str(out_dir)

    return copy
