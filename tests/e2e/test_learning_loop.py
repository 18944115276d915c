"""The whole loop with scripted users, short: they chat through the API and give feedback by one rule,
the app starts a round by itself once enough feedback has arrived, the gate ON ITS DEFAULT SETTINGS
promotes the candidate, the engine hot-swaps to it, every stored answer names the version that
produced it, and the served model follows the rule more often than the base model did. How much a
round learns, per rule and per kind of feedback, is measured by bench/efficacy.py, not here.

The rule (what these users want): brief answers. An answer of at most BRIEF_WORDS words is good.
- Each prompt gets four sampled candidates (n=4); users rank them shortest first,
- and give the shortest 👍 and the longest 👎 with the reason "Too long".
No rewrites: what users give most (rankings and thumbs) must carry the round, through the reward model and
PPO; SFT does not run.
Prompts are real first user turns from HH-RLHF (train split). The held-out prompts the figures are
measured on are sent only after the round (rounds train PPO on every stored prompt): first to the
promoted adapter, then, after an admin rolls back, to the base model (greedy answers, so the order
does not matter).
"""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from bench.efficacy import hh_prompts
from bench.common import AppProcess
from tests.conftest import USERS

BRIEF_WORDS = 20
TRAIN_PROMPTS = 32
HELD_OUT_PROMPTS = 12
CANDIDATES = 4  # a ranking of 4 gives the reward model 6 pairs: enough for a held-out accuracy above the gate's floor
MAX_TOKENS = 48
# A round cut down to a few CPU minutes (RM -> PPO -> evaluation). The gate's flags are not set: its defaults
# must promote what the users asked for. Eight answers per held-out prompt: the gate's fractions and interval
# rest on 64 answers, not on a few unlucky samples. The serving engine samples them, as long as these users'.
ROUND_ARGS = ("--min-pairs 16 --min-prompts 8 --eval-prompts 8 --eval-answers-per-prompt 8 "
              "--eval-on-engine --eval-engine-max-tokens 48 "
              "--rm-min-pairs 16 --rm-max-length 96 --rm-eval-fraction 0.2 "
              "--ppo-total-episodes 160 --ppo-max-new-tokens 40 "
              "--num-threads 2")
USERS_AT_ONCE = 8  # users chat at the same time, as on a real service: the engine batches their answers
FEEDBACK_TO_START = 3 * TRAIN_PROMPTS  # a ranking and two votes per prompt: the app starts the round by itself
ROUND_TIMEOUT_S = 2400


def words(text: str) -> int:
    return len(text.split())


def brief(text: str) -> bool:
    return 0 < words(text) <= BRIEF_WORDS


def give_feedback(client: httpx.Client, prompt: str, seed: int) -> None:
    """One scripted user turn: four candidates (seeded sampling) ranked shortest first (an empty
    answer last: nobody who likes brief answers wants none), 👍 on the shortest and 👎 on the
    longest."""
    reply = client.post("/v1/chat/completions", json={
        "model": "default", "messages": [{"role": "user", "content": prompt}],
        "n": CANDIDATES, "max_tokens": MAX_TOKENS, "temperature": 1.0, "seed": seed}).json()
    answers = sorted(((c["message"]["content"], c["response_id"]) for c in reply["choices"]),
                     key=lambda a: (not a[0].strip(), words(a[0])))
    ranking = client.post("/api/rankings", json={"response_ids": [rid for _, rid in answers]})
    assert ranking.status_code == 201, ranking.text
    said = [a for a in answers if a[0].strip()]
    if not said:
        return
    (_, short_id), (_, long_id) = said[0], said[-1]
    assert client.post("/api/feedback", json={"response_id": short_id, "rating": 1}).status_code == 201
    assert client.post("/api/feedback", json={"response_id": long_id, "rating": -1,
                                              "reason": "Too long"}).status_code == 201


def served_answer(client: httpx.Client, prompt: str) -> dict:
    """The greedy answer of whatever the app serves now, with the adapter version that served it."""
    reply = client.post("/v1/chat/completions", json={
        "model": "default", "messages": [{"role": "user", "content": prompt}],
        "max_tokens": MAX_TOKENS, "temperature": 0}).json()
    return {"text": reply["choices"][0]["message"]["content"], "response_id": reply["choices"][0]["response_id"],
            "adapter_version": reply["adapter_version"]}


def served_answers(client: httpx.Client, held_out: list[str]) -> list[dict]:
    """Greedy answers to every held-out prompt, asked at once (batched: the same answers alone, up to
    the batch's rounding, which the 25-point margin does not feel)."""
    with ThreadPoolExecutor(USERS_AT_ONCE) as pool:
        return list(pool.map(lambda prompt: served_answer(client, prompt), held_out))


def wait_for(predicate, timeout_s: float, what: str, app: AppProcess):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(5)
    raise TimeoutError(f"{what} did not happen in {timeout_s} s; app log:\n{app.log()[-3000:]}")


@pytest.fixture
def learning_app(model_path, tmp_path):
    auth = ",".join(f"{u}:{p}" for u, p in USERS.items())
    (tmp_path / "data").mkdir()
    app = AppProcess(data_dir=tmp_path / "data", model_path=model_path, extra=[
        "--auth", auth, "--admin", "alice", "--align-every", "1s", "--align-min-feedback", str(FEEDBACK_TO_START),
        "--align-check-s", "2", f"--align-args={ROUND_ARGS}"])
    try:
        app.wait_ready()
        yield app
    finally:
        app.stop()


def test_users_feedback_makes_the_served_model_follow_their_rule(learning_app):
    app = learning_app
    pool = hh_prompts()  # the prompts bench/efficacy.py's users chat with
    held_out, train = pool[:HELD_OUT_PROMPTS], pool[HELD_OUT_PROMPTS:HELD_OUT_PROMPTS + TRAIN_PROMPTS]
    users = {u: httpx.Client(base_url=app.url, auth=(u, p), timeout=300) for u, p in USERS.items()}
    admin = users["alice"]

    with ThreadPoolExecutor(USERS_AT_ONCE) as pool:  # list(): a failed assertion in a user's turn fails the test
        list(pool.map(lambda i: give_feedback(users["alice" if i % 2 else "bob"], train[i], seed=i), range(len(train))))

    # No one asks for a round: the scheduler starts one once the feedback is in.
    rounds = wait_for(lambda: admin.get("/api/align/rounds").json()["data"], 120, "an automatic round", app)
    assert rounds[-1]["trigger"] == "schedule"
    finished = wait_for(lambda: [r for r in admin.get("/api/align/rounds").json()["data"]
                                 if r["status"] != "running"], ROUND_TIMEOUT_S, "the round finishing", app)
    assert finished[0]["status"] == "succeeded", (finished[0]["error"], (app.data_dir / "rounds" / "1.log")
                                                  .read_text()[-3000:])
    round_log = (app.data_dir / "rounds" / "1.log").read_text()
    assert "SFT skipped: 0 demonstrations" in round_log, round_log[-3000:]  # rankings and thumbs carried it
    version = finished[0]["adapter_version"]
    # Done once the candidate serves, or once the gate has refused it (a promotion is recorded before its
    # hot-swap ends, so its decision alone is not enough to look at what serves).
    adapters = wait_for(lambda: (lambda a: a if a["active"] == version or
                                 any(x["decision"] and not x["decision"]["promote"] for x in a["data"]) else None)(
                            admin.get("/api/adapters").json()),
                        60, "the gate's decision", app)
    candidate = next(a for a in adapters["data"] if a["version"] == version)
    assert adapters["active"] == version, candidate["decision"]
    assert candidate["status"] == "active" and candidate["decision"]["by"] == "gate"
    gain_reason = next(r for r in candidate["decision"]["reasons"] if r.startswith("Mean reward"))
    assert "of up to 48 tokens, sampled by the serving engine" in gain_reason, gain_reason

    after = served_answers(admin, held_out)
    assert {a["adapter_version"] for a in after} == {version}
    rollback = admin.post("/api/adapters/base/activate")
    assert rollback.status_code == 200 and rollback.json()["active"] is None
    before = served_answers(admin, held_out)  # the base model, for the same prompts
    assert {a["adapter_version"] for a in before} == {None}  # the first request after the rollback uses it
    with app.db() as db:
        stored = {r["id"]: r["adapter_version"] for r in db.execute("select id, adapter_version from messages "
                                                                    "where role = 'assistant'")}
    assert all(stored[a["response_id"]] is None for a in before)
    assert all(stored[a["response_id"]] == version for a in after)

    brief_before = sum(brief(a["text"]) for a in before) / len(before)
    brief_after = sum(brief(a["text"]) for a in after) / len(after)
    mean_words = (sum(words(a["text"]) for a in before) / len(before), sum(words(a["text"]) for a in after) / len(after))
    report = {"brief_before": brief_before, "brief_after": brief_after, "mean_words": mean_words,
              "gate": candidate["decision"]["reasons"], "samples_after": [a["text"] for a in after[:4]]}
    (app.data_dir.parent / "learning_loop.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    assert brief_after >= brief_before + 0.25, report
