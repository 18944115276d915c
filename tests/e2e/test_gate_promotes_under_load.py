"""Hot-swap through HTTP, promoted by the loop's gate on its default settings: while 8 clients send
greedy chat requests back to back to app.py, a candidate that beats the base model appears in the
registry; the loop loads it, the gate promotes it and new requests move to it. Every request
succeeds, both versions served some, and every stored answer carries the greedy answer of the version
it names (each version's answer measured alone afterwards): its start, the first greedy token, as the
test adapter's random weights make near-ties later in its answer that batching on CPU may flip."""

import threading

import httpx

from storage import FeedbackStore
from bench.common import AppProcess
from tests.serving.test_candidate_preload import passing_metrics

CLIENTS = 8
CHAT = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}],
        "temperature": 0, "max_tokens": 6}


def keep_chatting(url: str, stop: threading.Event, answers: list, lock: threading.Lock) -> None:
    with httpx.Client(base_url=url, timeout=300) as http:
        while not stop.is_set():
            r = http.post("/v1/chat/completions", json=CHAT)
            with lock:
                answers.append((r.status_code,
                                r.json()["choices"][0]["response_id"] if r.status_code == 200 else r.text))


def wait_for(check, timeout_s: float) -> None:
    stop = threading.Event()
    for _ in range(int(timeout_s * 4)):
        if check():
            return
        stop.wait(0.25)
    raise TimeoutError("the gate did not promote the candidate")


def test_the_gate_promotes_a_candidate_under_load(model_path, random_adapter, tmp_path):
    app = AppProcess(data_dir=tmp_path, model_path=model_path, extra=["--align-check-s", "1"])
    candidate_dir = random_adapter(tmp_path / "adapters" / "1")
    answers, lock, stop = [], threading.Lock(), threading.Event()
    try:
        app.wait_ready()
        http = httpx.Client(base_url=app.url, timeout=300)
        clients = [threading.Thread(target=keep_chatting, args=(app.url, stop, answers, lock)) for _ in range(CLIENTS)]
        for c in clients:
            c.start()
        wait_for(lambda: len(answers) >= 2 * CLIENTS, 300)
        store = FeedbackStore.open(tmp_path)
        version = store.registry.register_adapter(path=candidate_dir, base_model="SmolLM2-135M-Instruct",
                                                  metrics=passing_metrics())
        wait_for(lambda: http.get("/healthz").json()["adapter_version"] == version, 300)
        served_after = len(answers)
        wait_for(lambda: len(answers) >= served_after + 2 * CLIENTS, 300)
        stop.set()
        for c in clients:
            c.join(300)
        adapter_text = http.post("/v1/chat/completions", json=CHAT).json()["choices"][0]["message"]["content"]
        http.post("/api/adapters/base/activate")
        base_text = http.post("/v1/chat/completions", json=CHAT).json()["choices"][0]["message"]["content"]
        decision = store.registry.adapter(version).decision
    finally:
        app.stop()

    assert decision["promote"] is True and decision["by"] == "gate"
    assert {status for status, _ in answers} == {200}
    expected = {None: start(base_text), version: start(adapter_text)}
    assert expected[None] != expected[version]
    with app.db() as db:
        stored = [(row["adapter_version"], row["content"]) for row in db.execute(
            f"SELECT adapter_version, content FROM messages WHERE id IN ({','.join('?' * len(answers))})",
            [rid for _, rid in answers])]
    assert {v for v, _ in stored} == {None, version}  # both versions served under the load
    assert [start(text) for _, text in stored] == [expected[v] for v, _ in stored]


def start(text: str) -> str:
    """The first three characters: the first token of either model's answer here ('The' / 'Cas')."""
    return text[:3]
