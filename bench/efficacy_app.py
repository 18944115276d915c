"""The app under test for bench/efficacy.py, and the HTTP calls its scripted users and its admin make.

`running_app` starts app.py on a free port in its own process group and stops exactly that group;
everything else here talks to it over HTTP only, as a user's client would.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import httpx

from bench.common import REPO, free_port, log_tail, stop_group, wait_healthy

USERS = {"alice": "alice-pw", "bob": "bob-pw"}  # alice is the admin
KV_CACHE_GIB = "2"  # the app's default KV cache; pinned so a value exported for other jobs does not leak in


@dataclass
class App:
    url: str
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen

    def client(self, user: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=(user, USERS[user]), timeout=900)

    def log(self) -> str:
        return log_tail(self.log_path, 60)


@contextlib.contextmanager
def running_app(*, data_dir: Path, model_path: str, extra: list[str]) -> Iterator[App]:
    """app.py with --auth (alice, bob; alice admin) on `data_dir`; `extra` adds flags to its defaults."""
    port = free_port()
    log_path = data_dir.parent / f"{data_dir.name}.app.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": KV_CACHE_GIB, "PYTHONUNBUFFERED": "1"}
    auth = ",".join(f"{u}:{p}" for u, p in USERS.items())
    cmd = [sys.executable, str(REPO / "app.py"), "--model", model_path, "--data-dir", str(data_dir),
           "--port", str(port), "--auth", auth, "--admin", "alice", *extra]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    app = App(url=f"http://127.0.0.1:{port}", data_dir=data_dir, log_path=log_path, proc=proc)
    try:
        try:
            wait_healthy(proc, app.url + "/healthz", timeout_s=900)
        except RuntimeError as e:
            raise RuntimeError(f"{e}\n{app.log()}") from e
        yield app
    finally:
        stop_group(proc, timeout_s=60)


def sample(client: httpx.Client, prompt: str, *, n: int, temperature: float) -> list[dict]:
    """n sampled answers at the app's default max_tokens: [{text, response_id, adapter_version}]."""
    r = client.post("/v1/chat/completions", json={
        "model": "default", "messages": [{"role": "user", "content": prompt}], "n": n, "temperature": temperature})
    if r.status_code != 200:
        raise RuntimeError(f"The chat request was refused: {r.status_code} {r.text[:300]}")
    body = r.json()
    return [{"text": c["message"]["content"], "response_id": c["response_id"],
             "adapter_version": body.get("adapter_version"), "finish_reason": c.get("finish_reason")}
            for c in body["choices"]]


def sample_many(app: App, prompts: list[str], *, samples: int, temperature: float, max_n: int = 4,
                concurrency: int = 8) -> list[list[dict]]:
    """`samples` answers for every prompt, asked by alice and bob in turn, `concurrency` requests at a time
    (vLLM batches them); n is capped at the app's default --max-n, so more samples take more requests."""
    clients = [app.client(u) for u in USERS]

    def answers(i: int) -> list[dict]:
        out: list[dict] = []
        while len(out) < samples:
            out += sample(clients[i % 2], prompts[i], n=min(max_n, samples - len(out)), temperature=temperature)
        return out

    try:
        with ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(answers, range(len(prompts))))
    finally:
        for c in clients:
            c.close()


def post(client: httpx.Client, path: str, body: dict) -> dict:
    r = client.post(path, json=body)
    if r.status_code != 201:
        raise RuntimeError(f"{path} refused {body}: {r.status_code} {r.text[:300]}")
    return r.json()


def wait_for(predicate: Callable[[], object], *, timeout_s: float, what: str, app: App, every_s: float = 5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        if app.proc.poll() is not None:
            raise RuntimeError(f"app.py exited with {app.proc.returncode} while waiting for {what}:\n{app.log()}")
        time.sleep(every_s)
    raise TimeoutError(f"{what} did not happen in {timeout_s:.0f} s; app log:\n{app.log()}")


def finished_round(admin: httpx.Client, app: App, *, timeout_s: float) -> dict:
    """Wait until the scheduler has started a round and it has finished; returns its row."""
    rounds = lambda: admin.get("/api/align/rounds").json()["data"]  # noqa: E731
    wait_for(rounds, timeout_s=300, what="an automatic round starting", app=app)
    return wait_for(lambda: next((r for r in rounds() if r["status"] != "running"), None),
                    timeout_s=timeout_s, what="the round finishing", app=app, every_s=10)


def gate_outcome(admin: httpx.Client, app: App, version: int) -> tuple[dict, int | None]:
    """The candidate's adapter row once the gate has decided (and, if promoted, once it serves)."""
    def decided():
        listing = admin.get("/api/adapters").json()
        row = next(a for a in listing["data"] if a["version"] == version)
        if row["decision"] and (not row["decision"].get("promote") or listing["active"] == version):
            return row, listing["active"]
        return None
    return wait_for(decided, timeout_s=300, what="the gate's decision", app=app)


def activate(admin: httpx.Client, version: int | str) -> dict:
    r = admin.post(f"/api/adapters/{version}/activate")
    return {"status": r.status_code, **r.json()}
