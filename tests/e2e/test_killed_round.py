"""A round killed with SIGKILL in the middle of training leaves serving untouched (chat keeps
answering, the same adapter version stays active), registers nothing, leaves no adapters/<version>
directory, is recorded as failed within seconds, and the next round can start and clears what the
killed one left half-written."""

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from bench.tiny import store_with_pairs
from bench.common import AppProcess

PAIRS = 48  # imported HH pairs: enough prompts and pairs for the thresholds below
# Small round settings; SFT is skipped so the first training stage is the reward model, which on
# 40-odd pairs lasts long enough (tens of seconds at nice 10) to be killed in the middle of.
ROUND_ARGS = ("--min-pairs 4 --min-prompts 4 --eval-prompts 4 --eval-max-new-tokens 12 "
              "--sft-min-demonstrations 1000 --rm-min-pairs 4 "
              "--ppo-total-episodes 4 --ppo-batch-size 4 --ppo-mini-batch-size 2 --ppo-epochs 1 "
              "--ppo-max-new-tokens 12")
TRAINING_STAGE = "Reward model on"  # the progress line the round writes as the reward model starts
REAP_WITHIN_S = 10  # --align-check-s 1: the app notices its dead child on its next tick


@pytest.fixture
def app(tmp_path, model_path):
    store_with_pairs(tmp_path, PAIRS).close()
    app = AppProcess(data_dir=tmp_path, model_path=model_path,
                     extra=["--align-every", "0", "--align-check-s", "1", f"--align-args={ROUND_ARGS}"])
    try:
        app.wait_ready()
        yield app
    finally:
        app.stop()  # the app, shutting down, also stops the second round's process group


def wait_for(predicate, *, timeout_s: float, what: str, app: AppProcess):
    """Poll until predicate() returns something truthy; return it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"Timed out after {timeout_s:.0f} s waiting for {what}.\n{app.log()[-3000:]}")


def chat(client: httpx.Client) -> str:
    reply = client.post("/v1/chat/completions", json={
        "model": "default", "max_tokens": 8, "temperature": 0,
        "messages": [{"role": "user", "content": "Say hello."}]})
    assert reply.status_code == 200, reply.text
    return reply.json()["choices"][0]["message"]["content"]


def round_row(client: httpx.Client, round_id: int) -> dict:
    return client.get(f"/api/align/rounds/{round_id}").json()


def adopted_and_training(client: httpx.Client, round_id: int, app_pid: int) -> dict | None:
    """The round row once its own process holds the lock and has reached the training stage."""
    row = round_row(client, round_id)
    assert row["status"] == "running", row  # it must not fail or finish before we kill it
    adopted = row["pid"] != app_pid
    return row if adopted and (row["progress"] or "").startswith(TRAINING_STAGE) else None


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def partial_dirs(data_dir: Path) -> set[str]:
    return {p.name for p in (data_dir / "adapters").glob(".tmp-*")}


def test_a_killed_round_leaves_serving_and_the_registry_untouched(app):
    with httpx.Client(base_url=app.url, timeout=120) as client:
        served_before = client.get("/healthz").json()["adapter_version"]
        assert chat(client)

        started = client.post("/api/align/run")
        assert started.status_code == 202, started.text
        round_id = started.json()["round"]["id"]
        training = wait_for(lambda: adopted_and_training(client, round_id, app.proc.pid), timeout_s=300,
                            what="the round to adopt its lock and start training", app=app)
        time.sleep(2)  # well inside the reward model's training loop
        assert chat(client)  # served while the round trains
        assert parent_pid(training["pid"]) == app.proc.pid  # the process we kill is the app's round child
        left_behind = partial_dirs(app.data_dir)
        os.kill(training["pid"], signal.SIGKILL)

        assert chat(client)
        failed = wait_for(lambda: (r := round_row(client, round_id))["status"] != "running" and r,
                          timeout_s=REAP_WITHIN_S, what="the killed round to be marked failed", app=app)
        assert failed["status"] == "failed" and failed["adapter_version"] is None
        assert "killed" in failed["error"] and TRAINING_STAGE in failed["error"], failed["error"]
        assert client.get("/healthz").json()["adapter_version"] == served_before
        assert client.get("/api/adapters").json() == {"active": served_before, "data": []}
        assert [p.name for p in (app.data_dir / "adapters").iterdir() if not p.name.startswith(".tmp-")] == []
        assert left_behind  # the killed round had started writing; only its .tmp- dir is left

        again = client.post("/api/align/run")
        assert again.status_code == 202, again.text
        next_id = again.json()["round"]["id"]
        wait_for(lambda: round_row(client, next_id)["progress"], timeout_s=300,
                 what="the next round to start", app=app)
        assert round_row(client, next_id)["status"] == "running"
        assert not left_behind & partial_dirs(app.data_dir)  # cleared by the round that holds the lock now
