"""The app serving through two real `vllm serve` replicas (--vllm-url): chat and streaming spread over
both with answers and feedback stored; an adapter swap reaching both; one replica killed in the
middle of the next swap (it is frozen first, so its load is in flight when it dies) while requests
keep succeeding through the other; the replica restarted and re-joining with the active adapter
loaded; rollback to the base model served by both."""

import json
import shutil
import signal
import threading
import time

import httpx
import pytest

from storage.store import FeedbackStore
from bench.common import AppProcess
from tests.conftest import USERS
from tests.scaleout.conftest import SERVED_NAME, VllmServe

pytestmark = pytest.mark.multiprocess  # vLLM replicas / a trainer on two ranks: make test-all

ADMIN = ("alice", USERS["alice"])
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def chat(client: httpx.Client, **extra) -> dict:
    response = client.post("/v1/chat/completions", json={"messages": QUESTION, "max_tokens": 8, "temperature": 0,
                                                         **extra})
    assert response.status_code == 200, response.text
    return response.json()


def stream(client: httpx.Client, n: int) -> tuple[dict[int, int], dict[int, str]]:
    ids, texts = {}, {i: "" for i in range(n)}
    with client.stream("POST", "/v1/chat/completions",
                       json={"messages": QUESTION, "max_tokens": 8, "n": n, "stream": True}) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            for choice in json.loads(line[6:])["choices"]:
                ids.setdefault(choice["index"], choice.get("response_id"))
                texts[choice["index"]] += choice.get("delta", {}).get("content") or ""
    return ids, texts


def replica_states(client: httpx.Client) -> dict[str, bool]:
    return {r["url"]: r["up"] for r in client.get("/api/replicas").json()["data"]}


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def register(data_dir, path) -> int:
    store = FeedbackStore.open(data_dir)
    try:
        return store.registry.register_adapter(path=str(path), base_model=SERVED_NAME)
    finally:
        store.close()


def test_two_replicas(model_path, random_adapter, tmp_path):
    a = VllmServe(model_path=model_path, log_path=tmp_path / "replica-a.log")
    b = VllmServe(model_path=model_path, log_path=tmp_path / "replica-b.log")
    data_dir = tmp_path / "app"
    data_dir.mkdir()
    app = AppProcess(data_dir=data_dir, model_path=model_path, extra=[
        "--vllm-url", f"{a.url},{b.url}", "--vllm-health-every-s", "1", "--vllm-health-timeout-s", "30",
        "--auth", ",".join(f"{u}:{p}" for u, p in USERS.items()), "--admin", "alice",
        "--align-every", "0", "--align-check-s", "3600"])
    restarted = None
    try:
        a.wait_ready(), b.wait_ready(), app.wait_ready()
        client = httpx.Client(base_url=app.url, auth=ADMIN, timeout=120)
        wait_for(lambda: all(replica_states(client).values()), 60, "both replicas in rotation")

        # Chat and streaming, spread over both replicas, stored with feedback.
        before = {r: r.requests_served() for r in (a, b)}
        replies = [chat(client) for _ in range(4)]
        served = lambda: [r.requests_served() - before[r] for r in (a, b)]  # noqa: E731
        wait_for(lambda: sum(served()) == 4, 10, "vLLM's request counters")
        assert served() == [2, 2]  # in turn
        ids, texts = stream(client, n=2)
        vote = client.post("/api/feedback", json={"response_id": replies[0]["choices"][0]["response_id"],
                                                  "rating": 1})
        assert vote.status_code == 201
        with app.db() as db:
            rows = {r["id"]: r for r in db.execute("select * from messages where role = 'assistant'")}
            votes = db.execute("select response_id, rating from votes").fetchall()
        assert [rows[r["choices"][0]["response_id"]]["content"] for r in replies] == \
            [r["choices"][0]["message"]["content"] for r in replies]
        assert [rows[ids[i]]["content"] for i in (0, 1)] == [texts[0], texts[1]]
        assert all(rows[ids[i]]["status"] == "complete" for i in (0, 1))
        assert [tuple(v) for v in votes] == [(replies[0]["choices"][0]["response_id"], 1)]

        # A swap reaches both replicas; the next answers come from the adapter.
        first = register(data_dir, random_adapter(tmp_path / "adapter-1"))
        swapped = client.post(f"/api/adapters/{first}/activate")
        assert swapped.status_code == 200, swapped.text
        assert a.adapters() == b.adapters() == {f"adapter-v{first}"}
        adapted = [chat(client) for _ in range(2)]
        assert [r["adapter_version"] for r in adapted] == [first, first]
        assert adapted[0]["choices"][0]["message"]["content"] != replies[0]["choices"][0]["message"]["content"]

        # Replica b dies while the next adapter is being loaded onto it.
        second_path = shutil.copytree(tmp_path / "adapter-1", tmp_path / "adapter-2")
        second = register(data_dir, second_path)
        b.signal_group(signal.SIGSTOP)  # b accepts connections but answers nothing
        result = {}
        activation = threading.Thread(target=lambda: result.update(
            response=client.post(f"/api/adapters/{second}/activate")))
        activation.start()
        time.sleep(2)  # the load request is now waiting on b
        b.stop(sig=signal.SIGKILL)
        activation.join(60)
        assert result["response"].status_code == 200, result["response"].text
        # Whichever notices first takes b out: the failed load itself ("... while loading adapter-vN")
        # or the periodic health check ("ReadError on /health"); on a quiet machine it is often the latter.
        assert f"vLLM replica {b.url} is out of rotation" in app.log()
        during = [chat(client) for _ in range(3)] + [chat(client, n=2, temperature=0.7)]
        ids, _ = stream(client, n=1)
        assert [r["adapter_version"] for r in during] == [second] * 4
        assert replica_states(client) == {a.url: True, b.url: False}
        with app.db() as db:
            stored = db.execute("select adapter_version, status from messages where id = ?", (ids[0],)).fetchone()
        assert tuple(stored) == (second, "complete")

        # b comes back: it gets the adapters (the active one first) before it takes traffic.
        restarted = VllmServe(model_path=model_path, log_path=tmp_path / "replica-b2.log", port=b.port)
        restarted.wait_ready()
        wait_for(lambda: replica_states(client)[b.url], 60, "the restarted replica to re-join")
        assert restarted.adapters() == {f"adapter-v{first}", f"adapter-v{second}"}

        # Rollback to the base model, served by both.
        rolled = client.post("/api/adapters/base/activate")
        before = restarted.requests_served()
        after_rollback = [chat(client) for _ in range(2)]
        assert rolled.status_code == 200 and rolled.json()["active"] is None
        assert [r["adapter_version"] for r in after_rollback] == [None, None]
        assert [r["choices"][0]["message"]["content"] for r in after_rollback] == \
            [replies[0]["choices"][0]["message"]["content"]] * 2
        wait_for(lambda: restarted.requests_served() - before == 1, 10, "one request served by the restarted b")
    finally:
        app.stop()
        for replica in (a, b, restarted):
            if replica is not None:
                replica.stop()
