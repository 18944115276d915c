"""Feedback under load: many concurrent clients send thumbs through POST /api/feedback, some of
their requests time out on purpose and are retried with the same Idempotency-Key, and afterwards
the database must hold every event exactly once.

    python bench/feedback_load.py                                   # starts its own app, 50 x 200
    python bench/feedback_load.py --url http://127.0.0.1:7860 --data-dir ./data   # a running app

Each event carries a unique comment (`<run>:<client>:<event>`) and a unique key. Every
`timeout_every`-th event's first attempt gets a read timeout far shorter than the server needs,
so the server stores the vote but the client never sees the answer, as after a dropped
connection; the client retries with the same key until it is acknowledged. Every
`replay_every`-th acknowledged event is sent once more, and must be answered with the same id.
Latency percentiles are over every request that got an answer (injected timeouts excluded).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx

ROOT = Path(__file__).resolve().parents[1]
# `python bench/feedback_load.py` puts bench/ first on sys.path, where bench/serving.py would
# shadow the `serving` package; the repository root must come first instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import AppProcess, machine_info, write_results  # noqa: E402
from common.flags import add_dataclass_args, from_namespace  # noqa: E402

RETRYABLE = (429, 500, 502, 503, 504)  # what a well-behaved client retries (with the same key)
MAX_ATTEMPTS = 20  # per event; reaching it fails the run: the server stopped answering


@dataclass
class LoadConfig:
    """One load run: who sends how much, which requests time out, and where results go."""

    url: str = field(default="", metadata={"help": "A running app; empty: start one (in a temporary data dir)."})
    data_dir: str = field(
        default="",
        metadata={"help": "The running app's data dir, whose chat.db is read (read-only) to count the stored "
                          "events. With --url empty: where the prepared model is looked up (./data)."},
    )
    auth: str = field(default="", metadata={"help": "'user:password' for an app started with --auth."})
    clients: int = field(default=50, metadata={"help": "Concurrent clients, each with its own connections."})
    events: int = field(default=200, metadata={"help": "Feedback events each client sends, one after another."})
    timeout_every: int = field(
        default=10, metadata={"help": "Every Nth event's first attempt times out on purpose (0: none)."}
    )
    injected_timeout_s: float = field(
        default=0.001,  # far below a commit's time: the answer is always missed, the write usually lands
        metadata={"help": "Read timeout of those first attempts, in seconds."},
    )
    replay_every: int = field(
        default=10, metadata={"help": "Every Nth acknowledged event is sent again and must get the same id (0: none)."}
    )
    request_timeout_s: float = field(
        default=120.0, metadata={"help": "Timeout of every other request, in seconds (a loaded 2-core box is slow)."}
    )
    out: str = field(
        default="bench/results/feedback_load.json", metadata={"help": "Where the JSON report is written."}
    )


@dataclass
class Tally:
    """What the clients saw, merged over all of them."""

    acknowledged: dict[str, int] = field(default_factory=dict)  # comment -> vote id in the 201
    latencies_ms: list[float] = field(default_factory=list)
    injected_timeouts: int = 0
    retries: int = 0  # attempts beyond the first, injected timeouts included
    replayed: int = 0  # answers marked Idempotent-Replayed
    replay_mismatches: int = 0  # a deliberate repeat that got another id or body


def parse_config(argv: list[str] | None = None) -> LoadConfig:
    parser = argparse.ArgumentParser(description="Feedback writes under load, with retries: exactly once?")
    add_dataclass_args(parser, LoadConfig)
    return from_namespace(LoadConfig, parser.parse_args(argv))


# ---------------------------------------------------------------- the app under test

@contextlib.contextmanager
def started_app(model_dir: str) -> Iterator[tuple[str, Path]]:
    """app.py on a free port with a fresh data dir (the model from `model_dir`); yields (url, data dir)."""
    from common.models import prepare_default_model

    model = str(prepare_default_model(model_dir or ROOT / "data"))
    with tempfile.TemporaryDirectory(prefix="feedback-load-") as tmp:
        # No automatic rounds: one would start after 50 votes and train on the same two cores.
        app = AppProcess(data_dir=Path(tmp), model_path=model, extra=["--max-tokens", "8", "--align-every", "0"])
        try:
            app.wait_ready()
            yield app.url, Path(tmp)
        finally:
            app.stop()


def prepare_answers(url: str, auth: tuple[str, str] | None) -> list[int]:
    """Four answers (one engine request, n=4, one token each) for the clients to vote on."""
    r = httpx.post(url + "/v1/chat/completions", auth=auth, timeout=300,
                   json={"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 1, "n": 4})
    r.raise_for_status()
    return [c["response_id"] for c in r.json()["choices"]]


# ---------------------------------------------------------------- clients

async def deliver(http: httpx.AsyncClient, body: dict, key: str, *, first_timeout_s: float | None,
                  cfg: LoadConfig, tally: Tally) -> httpx.Response:
    """POST one event until it is acknowledged, always with the same key; returns the 201."""
    for attempt in range(MAX_ATTEMPTS):
        injected = attempt == 0 and first_timeout_s is not None
        timeout = httpx.Timeout(cfg.request_timeout_s, read=first_timeout_s if injected else cfg.request_timeout_s)
        started = time.perf_counter()
        try:
            r = await http.post("/api/feedback", json=body, headers={"Idempotency-Key": key}, timeout=timeout)
        except httpx.TransportError:  # timeouts and dropped connections alike: retry with the same key
            tally.injected_timeouts += injected
            tally.retries += 1
            await asyncio.sleep(0.05 * attempt)
            continue
        tally.latencies_ms.append((time.perf_counter() - started) * 1000)
        if r.status_code in RETRYABLE:
            tally.retries += 1
            await asyncio.sleep(0.05 * (attempt + 1))
            continue
        if r.status_code != 201:
            raise RuntimeError(f"Event {body['comment']} was refused: {r.status_code} {r.text}")
        tally.replayed += r.headers.get("Idempotent-Replayed") == "true"
        return r
    raise RuntimeError(f"Event {body['comment']} was not acknowledged after {MAX_ATTEMPTS} attempts.")


async def run_client(n: int, *, url: str, auth, answers: list[int], run_id: str, cfg: LoadConfig,
                     tally: Tally) -> None:
    async with httpx.AsyncClient(base_url=url, auth=auth) as http:
        for e in range(cfg.events):
            comment = f"{run_id}:{n}:{e}"
            body = {"response_id": answers[(n + e) % len(answers)], "rating": 1 if e % 3 else -1,
                    "comment": comment}
            key = f"{run_id}-{n}-{e}"
            inject = cfg.timeout_every and e % cfg.timeout_every == cfg.timeout_every - 1
            r = await deliver(http, body, key, first_timeout_s=cfg.injected_timeout_s if inject else None,
                              cfg=cfg, tally=tally)
            tally.acknowledged[comment] = r.json()["id"]
            if cfg.replay_every and e % cfg.replay_every == 0:
                again = await deliver(http, body, key, first_timeout_s=None, cfg=cfg, tally=tally)
                same = again.json() == r.json() and again.headers.get("Idempotent-Replayed") == "true"
                tally.replay_mismatches += not same


async def run_clients(url: str, *, auth, answers: list[int], run_id: str, cfg: LoadConfig) -> tuple[Tally, float]:
    tally = Tally()
    started = time.perf_counter()
    await asyncio.gather(*(run_client(n, url=url, auth=auth, answers=answers, run_id=run_id, cfg=cfg, tally=tally)
                           for n in range(cfg.clients)))
    return tally, time.perf_counter() - started


# ---------------------------------------------------------------- checks and figures

def stored_events(db_file: Path, run_id: str) -> dict[str, list[int]]:
    """comment -> ids of the vote rows carrying it, for this run's events (read-only)."""
    conn = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT comment, id FROM votes WHERE comment LIKE ? ORDER BY id", (f"{run_id}:%",))
        stored: dict[str, list[int]] = {}
        for comment, vote_id in rows:
            stored.setdefault(comment, []).append(vote_id)
        return stored
    finally:
        conn.close()


def exactly_once(stored: dict[str, list[int]], acknowledged: dict[str, int], expected: int) -> dict:
    """How far the stored rows are from 'every event once, with the id its client was given'."""
    return {
        "expected": expected,
        "acknowledged": len(acknowledged),
        "stored": sum(len(ids) for ids in stored.values()),
        "duplicated": sum(1 for ids in stored.values() if len(ids) > 1),
        "missing": sum(1 for c in acknowledged if c not in stored),
        "id_mismatches": sum(1 for c, i in acknowledged.items() if stored.get(c) != [i]),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def figures(tally: Tally, wall_s: float, events: int) -> dict:
    lat = tally.latencies_ms
    return {"wall_s": round(wall_s, 2), "events_per_s": round(events / wall_s, 1), "requests_answered": len(lat),
            "latency_ms": {"p50": round(percentile(lat, 50), 1), "p99": round(percentile(lat, 99), 1),
                           "mean": round(statistics.fmean(lat), 1), "max": round(max(lat), 1)},
            "injected_timeouts": tally.injected_timeouts, "retries": tally.retries, "replayed": tally.replayed,
            "replay_mismatches": tally.replay_mismatches}


def run_load(url: str, db_file: Path, cfg: LoadConfig) -> dict:
    """The whole run against one app: answers to vote on, the clients, then the exactly-once check."""
    auth = tuple(cfg.auth.split(":", 1)) if cfg.auth else None
    answers = prepare_answers(url, auth)
    run_id = uuid.uuid4().hex[:8]
    tally, wall_s = asyncio.run(run_clients(url, auth=auth, answers=answers, run_id=run_id, cfg=cfg))
    expected = cfg.clients * cfg.events
    return {"config": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "auth"}, "run_id": run_id,
            "exactly_once": exactly_once(stored_events(db_file, run_id), tally.acknowledged, expected),
            **figures(tally, wall_s, expected)}


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(argv)
    load_before = os.getloadavg()
    if cfg.url:
        if not cfg.data_dir:
            sys.exit("--data-dir is needed with --url: the check reads the app's chat.db.")
        report = run_load(cfg.url.rstrip("/"), Path(cfg.data_dir) / "chat.db", cfg)
    else:
        with started_app(cfg.data_dir) as (url, data_dir):
            report = run_load(url, data_dir / "chat.db", cfg)
    report["machine"] = {**machine_info(), "load_avg_before": load_before}
    write_results(report, cfg.out)
    print(json.dumps(report, indent=1))
    once = report["exactly_once"]
    if (once["stored"], once["acknowledged"], once["id_mismatches"], report["replay_mismatches"]) != \
            (once["expected"], once["expected"], 0, 0):
        sys.exit("Not every event was stored exactly once: see exactly_once above.")


if __name__ == "__main__":
    main()
