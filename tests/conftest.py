"""Shared fixtures: the prepared default model, one real vLLM engine per test session (in a
background event loop), one running app.py per test session on a free local port, and random PEFT
adapters made once per seed.

Tests run grouped by the expensive thing they use (see `resource_rank`): first those that need no
model, then in-process training on the model, then the tests of the shared engine, then those of the
shared app, then the tests that start processes of their own. Each shared engine or app stops right
after the last test that needs it, so none sits in memory beside the processes later tests start."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
USERS = {"alice": "alice-pw", "bob": "bob-pw"}
KV_CACHE_GIB = "1"  # tests send few, short requests


@pytest.fixture(scope="session")
def model_path() -> str:
    """The default model, prepared once into ./data (make run reuses it)."""
    from common.models import prepare_default_model

    return str(prepare_default_model(REPO / "data"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


class AppProcess:
    """app.py started as a subprocess in its own process group (vLLM spawns children)."""

    def __init__(self, *, data_dir: Path, model_path: str, extra: list[str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.log_path = data_dir / "app.log"
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": KV_CACHE_GIB, "PYTHONUNBUFFERED": "1"}
        if "--align-every" not in " ".join(extra):
            # Test apps collect feedback fast: an automatic round would train (minutes of CPU) under
            # every other test. Tests of the loop ask for rounds explicitly.
            extra = ["--align-every", "0", *extra]
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "app.py"), "--model", model_path, "--data-dir", str(data_dir),
             "--port", str(self.port), "--max-num-seqs", "16", *extra],
            cwd=REPO, env=env, stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout=600):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise TimeoutError(f"app.py did not become healthy:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> bool:
        """Stop exactly the process group we started; False if it ignored SIGTERM for a minute and
        had to be killed."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
                return False
        return True

    def db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.data_dir / "chat.db")
        conn.row_factory = sqlite3.Row
        return conn

    def counts(self) -> dict[str, int]:
        with self.db() as conn:
            return {t: conn.execute(f"select count(*) from {t}").fetchone()[0]
                    for t in ("conversations", "messages", "votes", "rankings", "ranking_items", "demonstrations")}


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
