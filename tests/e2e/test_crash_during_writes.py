"""SIGKILL of the app in the middle of a burst of feedback writes and of a streamed answer, then a
restart: the database passes PRAGMA integrity_check, every acknowledged (2xx) event is there under
the id it was given, the events whose answer was lost are stored exactly once when their clients
retry them with the same Idempotency-Key, and the cut-off answer is 'incomplete', not 'streaming', and
takes no feedback."""

import json
import os
import signal
import threading

import httpx

from bench.common import AppProcess

CLIENTS = 16
ACKED_BEFORE_KILL = 150  # the kill lands mid-burst, with writes in flight


def start_app(data_dir, model_path) -> AppProcess:
    # No automatic rounds: one would start after 50 votes and compete for the CPU.
    app = AppProcess(data_dir=data_dir, model_path=model_path, extra=["--max-tokens", "8", "--align-every", "0"])
    app.wait_ready()
    return app


def event(n: int, e: int, answers: list[int]) -> tuple[str, dict]:
    """(Idempotency-Key, body) of client n's e-th event; the comment names the event."""
    return f"crash-{n}-{e}", {"response_id": answers[(n + e) % len(answers)], "rating": 1, "comment": f"{n}:{e}"}


def keep_sending(url: str, n: int, answers: list[int], acked: dict, sent: dict, lock: threading.Lock):
    """Send events until the server is gone; remember what was sent and which were acknowledged."""
    with httpx.Client(base_url=url, timeout=60) as http:
        for e in range(10_000):
            key, body = event(n, e, answers)
            with lock:
                sent[key] = body
            try:
                r = http.post("/api/feedback", json=body, headers={"Idempotency-Key": key})
            except httpx.TransportError:
                return
            if r.status_code == 201:
                with lock:
                    acked[key] = r.json()["id"]


def stream_until_killed(url: str, started: threading.Event, answer: list[int]) -> None:
    """A long streamed answer; `answer` gets its response_id once the first chunk is in."""
    body = {"messages": [{"role": "user", "content": "Tell me a long story."}], "max_tokens": 1000,
            "stream": True, "ignore_eos": True}
    try:
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=300) as r:
            for line in r.iter_lines():
                if line.startswith("data: {") and not answer:
                    answer.append(json.loads(line[len("data: "):])["choices"][0]["response_id"])
                    started.set()
    except httpx.TransportError:
        pass  # the kill


def test_kill_during_writes_loses_nothing_acknowledged(model_path, tmp_path):
    data_dir = tmp_path
    app = start_app(data_dir, model_path)
    try:
        r = httpx.post(app.url + "/v1/chat/completions", timeout=300,
                       json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1, "n": 4})
        answers = [c["response_id"] for c in r.json()["choices"]]
        acked, sent, lock = {}, {}, threading.Lock()
        clients = [threading.Thread(target=keep_sending, args=(app.url, n, answers, acked, sent, lock))
                   for n in range(CLIENTS)]
        started, streamed = threading.Event(), []
        streaming = threading.Thread(target=stream_until_killed, args=(app.url, started, streamed))
        streaming.start()
        assert started.wait(300), "the streamed answer never started"
        for c in clients:
            c.start()
        while len(acked) < ACKED_BEFORE_KILL and any(c.is_alive() for c in clients):
            threading.Event().wait(0.01)
        os.killpg(app.proc.pid, signal.SIGKILL)  # the app and its vLLM engine process, mid-burst
        app.proc.wait(30)
        for c in [*clients, streaming]:
            c.join(60)
    finally:
        app.stop()

    app = start_app(data_dir, model_path)
    try:
        with app.db() as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            cut_off = db.execute("SELECT status FROM messages WHERE id = ?", streamed).fetchone()[0]
            assert cut_off == "incomplete"  # marked at start-up; it was 'streaming' when the app died
            stored = {f"crash-{row['comment'].replace(':', '-')}": row["id"]
                      for row in db.execute("SELECT id, comment FROM votes WHERE comment IS NOT NULL")}
        assert len(acked) >= ACKED_BEFORE_KILL
        assert {key: stored.get(key) for key in acked} == acked

        lost = [key for key in sent if key not in acked]  # in flight at the kill: stored or not, we can't tell
        with httpx.Client(base_url=app.url, timeout=60) as http:
            refused = http.post("/api/feedback", json={"response_id": streamed[0], "rating": -1})
            assert (refused.status_code, refused.json()["error"]["message"]) == (
                400, f"Answer {streamed[0]} was cut off when the server stopped, so it takes no feedback; ask "
                     "again for a complete answer.")
            retried = [http.post("/api/feedback", json=sent[key], headers={"Idempotency-Key": key}) for key in lost]
        assert [r.status_code for r in retried] == [201] * len(lost)
        with app.db() as db:
            counts = db.execute("SELECT count(*), count(DISTINCT comment) FROM votes").fetchone()
        assert tuple(counts) == (len(sent), len(sent))  # every event once, retried or not
    finally:
        app.stop()
