"""A worker on this machine runs a round for the app over HTTP only (`accelerate launch
--num_processes 2 -m align worker --server URL --token T`): rank 0 alone claims the round, fetches
the data and uploads; both ranks train every stage; the app registers exactly one candidate, whose
metrics say two processes trained it; its gate promotes it (its margins and reward-model floor are
opened so that a 4-episode round passes) and the next chat is served by it. (One test for both: the worker and its
ranks each cost an app and a round of CPU minutes.)"""

import json
import time
from pathlib import Path

import httpx
import pytest

from serving.keys import add_key
from bench.tiny import store_with_pairs
from bench.common import AppProcess
from tests.conftest import USERS
from tests.launch import run_launched

pytestmark = pytest.mark.multiprocess  # vLLM replicas / a trainer on two ranks: make test-all

TINY_ROUND = ["--min-pairs", "4", "--min-prompts", "4", "--eval-prompts", "4", "--eval-max-new-tokens", "12",
              "--sft-min-demonstrations", "2", "--sft-epochs", "1", "--sft-max-length", "512",
              "--rm-min-pairs", "4", "--rm-epochs", "1", "--rm-max-length", "128", "--rm-eval-fraction", "0.2",
              "--ppo-total-episodes", "4", "--ppo-batch-size", "4", "--ppo-mini-batch-size", "2",
              "--ppo-epochs", "1", "--ppo-max-new-tokens", "12"]


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)
    return value


def app_for_a_worker(model_path, tmp_path, *extra: str) -> tuple[AppProcess, str, Path]:
    """(app, admin token, data dir): an app (not started yet) with 24 HH pairs, auth, alice as admin
    holding the API key a worker sends, and no scheduled rounds."""
    data_dir = tmp_path / "app"
    store_with_pairs(data_dir, 24).close()
    token = add_key(tmp_path / "keys.txt", user="alice")
    app = AppProcess(data_dir=data_dir, model_path=model_path, extra=[
        "--auth", ",".join(f"{u}:{p}" for u, p in USERS.items()), "--admin", "alice",
        "--api-keys", str(tmp_path / "keys.txt"), "--align-every", "0", *extra])
    return app, token, data_dir


def test_two_process_worker_round_over_http(model_path, tmp_path):
    app, token, data_dir = app_for_a_worker(
        model_path, tmp_path, "--align-check-s", "1",
        "--gate-min-reward-margin", "-1000", "--gate-max-kl", "1000", "--gate-max-degenerate-increase", "1",
        "--gate-min-rm-accuracy", "0")
    try:
        app.wait_ready()
        worker = run_launched(["-m", "align", "worker", "--server", app.url, "--token", token,
                               "--work-dir", str(tmp_path / "worker"), "--model", model_path, "--num-threads", "1",
                               "--rank-timeout-s", "600", *TINY_ROUND], processes=2, timeout=1500)
        assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]
        client = httpx.Client(base_url=app.url, headers={"Authorization": f"Bearer {token}"}, timeout=120)
        active = wait_for(lambda: client.get("/api/adapters").json()["active"], 120, "the gate to promote v1")
        rounds = client.get("/api/align/rounds").json()["data"]
        adapters = client.get("/api/adapters").json()["data"]
        reply = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hello!"}],
                                                          "max_tokens": 8})
    finally:
        app.stop()

    assert worker.stdout.splitlines().count("version=1") == 1  # rank 0 reports; rank 1 prints nothing
    assert active == 1 and [a["version"] for a in adapters] == [1]
    assert [(r["trigger"], r["status"], r["adapter_version"], r["requested_by"]) for r in rounds] == \
        [("worker", "succeeded", 1, "alice")]
    assert reply.status_code == 200 and reply.json()["adapter_version"] == 1
    metrics = json.loads((data_dir / "adapters" / "1" / "metrics.json").read_text())
    assert metrics["training"] == {"processes": 2, "device": "cpu"}
    assert metrics["reward_model"]["processes"] == 2  # the Trainer ran data-parallel on both ranks
    stored = sorted(p.name for p in (data_dir / "adapters" / "1").iterdir())
    assert {"adapter_config.json", "adapter_model.safetensors", "metrics.json", "reward_model", "sft"} <= set(stored)
    assert [p.name for p in (data_dir / "adapters").iterdir()] == ["1"]  # no upload left behind
    assert not list(Path(tmp_path / "worker").glob("round-*"))  # the worker cleaned up
