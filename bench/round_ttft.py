"""Serving while a round trains: time to first token with and without an alignment round running.

    python bench/round_ttft.py                      # round at the app's default nice 10, then at nice 0
    python bench/round_ttft.py --nice 10 --requests 8  # one app run, fewer requests

For each --nice value the benchmark starts `app.py --align-nice N` on a free port, with a fresh data
dir holding the first --pairs HH-harmless pairs as feedback (enough for a round), and measures
streaming requests in three phases:

    idle-before  no round running
    round        after POST /api/align/run, once the round's progress shows --stage (PPO by default:
                 the longest stage and the one using every core); the round must still be running
                 when the phase ends, or the phase is marked invalid
    idle-after   the round stopped (SIGTERM to the round process), so slow drift in the load that
                 other jobs put on a shared machine shows up as a before/after difference

Each phase sends --requests requests at each --concurrency level (greedy, ignore_eos, --max-tokens
tokens) and reports TTFT p50/p90. The round's own CPU time during the round phase shows it kept
training. Results go to JSON and a Markdown table (for BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
# `python bench/round_ttft.py` puts bench/ first on sys.path, where bench/serving.py would shadow
# the `serving` package; the repository root must come first instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (HH_TRAIN, free_port, log_tail, machine_info, machine_line, markdown_table,  # noqa: E402
                          stop_group, uptime, utc_now, wait_healthy, write_results)
from bench.serving import prepare_data_dir, server_env  # noqa: E402
from common.flags import add_dataclass_args, from_namespace  # noqa: E402
from serving.config import EngineConfig  # noqa: E402

# Short and varied, so prompt lengths (and prefill work) differ from request to request; the
# same list, cycled, is sent in every phase.
PROMPTS = [
    "What is the capital of France?",
    "Explain photosynthesis in one sentence.",
    "Write a haiku about the sea.",
    "How do I reverse a list in Python?",
    "Why is the sky blue?",
    "Give me three tips for better sleep.",
    "What is 17 times 23?",
    "Summarize the plot of Romeo and Juliet.",
    "What does HTTP stand for?",
    "Name a few uses of baking soda.",
    "How does a bicycle stay upright?",
    "Translate 'good morning' into Spanish.",
    "What is the difference between a virus and a bacterium?",
    "Suggest a name for a friendly robot.",
    "How many legs does a spider have?",
    "What should I pack for a weekend hike?",
]


# ---------------------------------------------------------------------------- client

def request_body(prompt: str, *, model: str, max_tokens: int) -> dict:
    return {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "top_p": 1.0,  # the app fills in its own default (0.9) when none is given; greedy ignores it anyway
        "ignore_eos": True,  # vLLM sampling extra: every answer is exactly max_tokens long
    }


async def stream_one(client, url: str, body: dict) -> dict:
    """Send one streaming request; time to first content, total time and output tokens."""
    start = time.perf_counter()
    ttft = None
    deltas = 0
    usage_tokens = None
    async with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            text = (await response.aread()).decode(errors="replace")
            raise RuntimeError(f"POST {url} -> {response.status_code}: {text[:2000]}")
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            payload = line[len("data: "):].strip()
            if payload == "[DONE]":
                break
            chunk = json.loads(payload)
            if "error" in chunk:
                raise RuntimeError(f"Stream error from {url}: {chunk['error']}")
            if chunk.get("usage"):
                usage_tokens = chunk["usage"].get("completion_tokens")
            for choice in chunk.get("choices") or ():
                if (choice.get("delta") or {}).get("content"):
                    deltas += 1
                    if ttft is None:
                        ttft = time.perf_counter() - start
    total = time.perf_counter() - start
    return {"ttft_s": ttft if ttft is not None else total, "e2e_s": total, "deltas": deltas,
            "tokens": usage_tokens if usage_tokens is not None else deltas}


async def run_requests(client, url: str, bodies: list[dict], concurrency: int) -> tuple[list[dict], float]:
    """`concurrency` workers take bodies from one queue until it is empty. Returns the per-request
    results and the wall time from first send to last byte."""
    queue: asyncio.Queue = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    results: list[dict] = []

    async def worker():
        while not queue.empty():
            results.append(await stream_one(client, url, queue.get_nowait()))

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results, time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)



PHASES = ("idle-before", "round", "idle-after")


@dataclass
class BenchConfig:
    """What one benchmark run measures: feedback, round, workload, and where the results go."""

    data_dir: str = field(
        default="./data",  # the app's default data dir, where `make model` prepares the weights
        metadata={"help": "Data dir holding models/SmolLM2-135M-Instruct (prepared there if missing); "
                          "only the model is used, the benchmark's database is a fresh temporary one."},
    )
    pairs: int = field(
        default=150,  # well above every round threshold; the reward model trains on them in ~1 CPU minute
        metadata={"help": "HH-harmless pairs imported as feedback (the first N of the train split)."},
    )
    nice: list[int] = field(
        default_factory=lambda: [10, 0],  # the app's default, then no priority difference at all
        metadata={"help": "--align-nice values to compare; each gets its own app run."},
    )
    round_args: str = field(
        default="",  # the round the app runs by default: the measured load is the real one
        metadata={"help": "--align-args for the round (flags of `python -m align run`)."},
    )
    stage: str = field(
        default="PPO step",  # PPO is most of a round's time and runs torch on every core
        metadata={"help": "Measure the round phase once the round's progress line starts with this."},
    )
    requests: int = field(
        default=12,  # 12 TTFT samples per phase and level: p90 is the second-slowest
        metadata={"help": "Requests per phase and concurrency level (the prompt list, cycled)."},
    )
    concurrency: list[int] = field(
        default_factory=lambda: [1, 4],  # one user alone, and a few users at once
        metadata={"help": "Concurrency levels: at level c, c async workers share the request list."},
    )
    max_tokens: int = field(
        default=32,  # a short answer: enough decode steps to keep the engine busy between first tokens
        metadata={"help": "Output tokens per request (ignore_eos: exactly this many)."},
    )
    warmup: int = field(
        default=4,  # first requests pay for lazy init and cold caches; not measured
        metadata={"help": "Unmeasured requests sent after the app is healthy."},
    )
    round_timeout_s: float = field(
        default=900.0,  # round start (imports) + reward model + first PPO step on 2 busy cores
        metadata={"help": "Seconds to wait for the round to reach --stage."},
    )
    startup_timeout_s: float = field(
        default=600.0,  # engine start is ~1 min on 2 idle cores, several when other jobs run
        metadata={"help": "Seconds to wait for the app to answer its health check."},
    )
    request_timeout_s: float = field(
        default=300.0, metadata={"help": "Seconds one request may take before the run fails."}
    )
    out: str = field(
        default=str(ROOT / "bench" / "results" / "round_ttft.json"),
        metadata={"help": "Where to write the results as JSON (folders are created)."},
    )


def parse_config(argv: list[str] | None = None) -> BenchConfig:
    parser = argparse.ArgumentParser(description="Time to first token of the app with and without an "
                                                 "alignment round training beside it.")
    add_dataclass_args(parser, BenchConfig)
    cfg = from_namespace(BenchConfig, parser.parse_args(argv))
    if cfg.pairs < 40 or cfg.requests < 1 or cfg.max_tokens < 1 or min(cfg.concurrency) < 1:
        parser.error("--pairs must be at least 40 (the round's thresholds); --requests, --max-tokens and "
                     "--concurrency must be positive.")
    return cfg


# ---------------------------------------------------------------------------- the app and its round

def import_feedback(data_dir: Path, pairs: int) -> int:
    """The first `pairs` HH pairs as rankings in the app's database; returns how many were stored."""
    from storage.importer import read_pairs, store_pairs
    from storage.store import FeedbackStore

    store = FeedbackStore.open(data_dir)
    try:
        return store_pairs(store, read_pairs(HH_TRAIN)[:pairs])["imported"]
    finally:
        store.close()


@contextlib.contextmanager
def running_app(*, data_dir: Path, nice: int, cfg: BenchConfig, log_path: Path) -> Iterator[tuple[str, int]]:
    """app.py in its own process group, rounds only on request; yields (base URL, app pid)."""
    port = free_port()
    cmd = [sys.executable, str(ROOT / "app.py"), "--data-dir", str(data_dir), "--host", "127.0.0.1",
           "--port", str(port), "--align-every", "0", "--align-check-s", "2", "--align-nice", str(nice),
           f"--align-args={cfg.round_args}"]
    print(f"[nice {nice}] starting: {' '.join(cmd)}", file=sys.stderr, flush=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=server_env(EngineConfig()), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        waited = wait_healthy(proc, base + "/healthz", timeout_s=cfg.startup_timeout_s)
        print(f"[nice {nice}] healthy after {waited:.0f} s", file=sys.stderr, flush=True)
        yield base, proc.pid
    except BaseException:
        print(f"[nice {nice}] app log tail:\n{log_tail(log_path)}", file=sys.stderr, flush=True)
        raise
    finally:
        stop_group(proc)  # the round process is in the app's group too


def round_row(base: str, round_id: int) -> dict:
    import httpx

    return httpx.get(f"{base}/api/align/rounds/{round_id}", timeout=30).json()


def start_round(base: str) -> int:
    import httpx

    reply = httpx.post(f"{base}/api/align/run", timeout=30)
    if reply.status_code != 202:
        raise RuntimeError(f"POST /api/align/run -> {reply.status_code}: {reply.text}")
    return reply.json()["round"]["id"]


def wait_for_stage(base: str, round_id: int, *, app_pid: int, stage: str, timeout_s: float) -> dict:
    """The round row once its own process holds the lock and its progress has reached `stage`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = round_row(base, round_id)
        if row["status"] != "running":
            raise RuntimeError(f"Round {round_id} ended before reaching {stage!r}: {row['error']}")
        if row["pid"] != app_pid and (row["progress"] or "").startswith(stage):
            return row
        time.sleep(1.0)
    raise RuntimeError(f"Round {round_id} did not reach {stage!r} within {timeout_s:.0f} s.")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_round(base: str, round_id: int, pid: int, *, app_pid: int) -> None:
    """SIGTERM the round process (a child of our app, checked) and wait until the app records it."""
    ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    if ppid != app_pid:
        raise RuntimeError(f"Round {round_id}'s pid {pid} is not a child of our app (pid {app_pid}).")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while round_row(base, round_id)["status"] == "running":
        if time.monotonic() > deadline:
            raise RuntimeError(f"Round {round_id} still running 60 s after SIGTERM.")
        time.sleep(1.0)


# ---------------------------------------------------------------------------- measuring

def phase_bodies(cfg: BenchConfig, concurrency: int) -> list[dict]:
    n = max(cfg.requests, 2 * concurrency)
    return [request_body(PROMPTS[i % len(PROMPTS)], model="default", max_tokens=cfg.max_tokens)
            for i in range(n)]


async def measure_levels(base: str, cfg: BenchConfig, *, label: str, warmup: int = 0) -> dict[str, dict]:
    """Every concurrency level once; per level TTFT p50/p90, latency p50, tok/s and the load average."""
    import httpx

    url = base + "/v1/chat/completions"
    top = max(cfg.concurrency)
    limits = httpx.Limits(max_connections=top + 4, max_keepalive_connections=top + 4)
    async with httpx.AsyncClient(timeout=cfg.request_timeout_s, limits=limits) as client:
        if warmup:
            await run_requests(client, url, phase_bodies(cfg, 1)[:warmup], min(warmup, top))
        levels = {}
        for c in cfg.concurrency:
            results, wall_s = await run_requests(client, url, phase_bodies(cfg, c), c)
            levels[str(c)] = level_metrics(results, wall_s)
            m = levels[str(c)]
            print(f"  [{label}] c={c}: TTFT p50 {m['ttft_p50_ms']:.0f} ms, p90 {m['ttft_p90_ms']:.0f} ms, "
                  f"latency p50 {m['e2e_p50_ms']:.0f} ms, {m['tokens_per_s']:.1f} tok/s, "
                  f"load {m['load_avg_1m']:.2f}", file=sys.stderr, flush=True)
    return levels


def level_metrics(results: list[dict], wall_s: float) -> dict:
    ttft_ms = [r["ttft_s"] * 1000 for r in results]
    return {
        "requests": len(results),
        "ttft_p50_ms": statistics.median(ttft_ms),
        "ttft_p90_ms": percentile(ttft_ms, 90),
        "e2e_p50_ms": statistics.median(r["e2e_s"] * 1000 for r in results),
        "tokens_per_s": sum(r["tokens"] for r in results) / wall_s,
        "wall_s": wall_s,
        "load_avg_1m": os.getloadavg()[0],
    }


def measure_round_phase(base: str, cfg: BenchConfig, *, app_pid: int, nice: int) -> tuple[dict, dict]:
    """Start a round, wait for --stage, measure; returns (levels, what the round did meanwhile)."""
    round_id = start_round(base)
    t = time.monotonic()
    row = wait_for_stage(base, round_id, app_pid=app_pid, stage=cfg.stage, timeout_s=cfg.round_timeout_s)
    reached_s = time.monotonic() - t
    print(f"[nice {nice}] round {round_id} (pid {row['pid']}) reached {row['progress']!r} after {reached_s:.0f} s",
          file=sys.stderr, flush=True)
    cpu_before, t = process_cpu_s(row["pid"]), time.monotonic()
    levels = asyncio.run(measure_levels(base, cfg, label=f"nice {nice} round"))
    cpu_s, wall_s = process_cpu_s(row["pid"]) - cpu_before, time.monotonic() - t
    after = round_row(base, round_id)
    watch = {"round_id": round_id, "pid": row["pid"], "stage_reached_after_s": reached_s,
             "progress_at_start": row["progress"], "progress_at_end": after["progress"],
             "running_at_end": after["status"] == "running", "round_cpu_s": cpu_s, "phase_wall_s": wall_s,
             "round_cpu_share": cpu_s / wall_s}  # of one core; up to nproc with several torch threads
    if watch["running_at_end"]:
        stop_round(base, round_id, row["pid"], app_pid=app_pid)
    print(f"[nice {nice}] round used {cpu_s:.0f} CPU s in {wall_s:.0f} s; still running at the end: "
          f"{watch['running_at_end']}", file=sys.stderr, flush=True)
    return levels, watch


def run_nice(cfg: BenchConfig, nice: int, *, source: str, tmp: Path) -> dict:
    """One app run at --align-nice `nice`: idle-before, round, idle-after."""
    work = tmp / f"nice{nice}"
    work.mkdir()
    data_dir, _ = prepare_data_dir(source, work)
    data_dir.chmod(0o700)  # the app warns about a data dir other users can read
    imported = import_feedback(data_dir, cfg.pairs)
    with running_app(data_dir=data_dir, nice=nice, cfg=cfg, log_path=work / "app.log") as (base, app_pid):
        before = asyncio.run(measure_levels(base, cfg, label=f"nice {nice} idle-before", warmup=cfg.warmup))
        during, watch = measure_round_phase(base, cfg, app_pid=app_pid, nice=nice)
        after = asyncio.run(measure_levels(base, cfg, label=f"nice {nice} idle-after"))
    return {"nice": nice, "imported_pairs": imported, "round": watch,
            "phases": {"idle-before": before, "round": during, "idle-after": after}}


# ---------------------------------------------------------------------------- report

def ratios(run: dict) -> dict[str, dict]:
    """Round / idle TTFT per level, against each idle phase and against their mean: on a shared
    machine a burst of other jobs can hit one idle phase, which the other then shows."""
    out = {}
    for c, during in run["phases"]["round"].items():
        before, after = run["phases"]["idle-before"][c], run["phases"]["idle-after"][c]
        out[c] = {f"{q}_vs_{ref}": during[f"ttft_{q}_ms"] / base
                  for q in ("p50", "p90")
                  for ref, base in (("before", before[f"ttft_{q}_ms"]), ("after", after[f"ttft_{q}_ms"]),
                                    ("idle", (before[f"ttft_{q}_ms"] + after[f"ttft_{q}_ms"]) / 2))}
    return out


def report_markdown(report: dict) -> str:
    m, cfg = report["machine"], report["config"]
    lines = [
        f"Machine: {machine_line(m)}; no GPU; vLLM {m['vllm']}, Python {m['python']}.",
        f"Load before: `{report['load_before']}`; after: `{report['load_after']}`.",
        f"Workload: SmolLM2-135M-Instruct, {cfg['max_tokens']} output tokens per request (temperature 0, "
        f"ignore_eos), streaming, {cfg['requests']} requests per phase and concurrency level; feedback = the "
        f"first {cfg['pairs']} HH-harmless pairs; round = `python -m align run` "
        f"{'with ' + repr(cfg['round_args']) if cfg['round_args'] else 'with default settings'}, measured "
        f"once its progress showed {cfg['stage']!r}.",
        "",
        markdown_table(["--align-nice", "phase", "concurrency", "TTFT p50 (ms)", "TTFT p90 (ms)", "latency p50 (ms)",
                        "tok/s", "load avg (1m)"],
                       [[run["nice"], phase, c, f"{s['ttft_p50_ms']:.0f}", f"{s['ttft_p90_ms']:.0f}",
                         f"{s['e2e_p50_ms']:.0f}", f"{s['tokens_per_s']:.1f}", f"{s['load_avg_1m']:.2f}"]
                        for run in report["runs"] for phase in PHASES for c, s in run["phases"][phase].items()],
                       align="rlrrrrrr"),
        "",
        "TTFT with the round running, divided by TTFT idle (before it, after it, and their mean):",
        "",
        markdown_table(["--align-nice", "concurrency", "p50 / before", "p50 / after", "p50 / mean idle",
                        "p90 / before", "p90 / after", "p90 / mean idle", "round CPU (cores)", "round still running"],
                       [[run["nice"], c, *(f"{r[f'{q}_vs_{ref}']:.2f}" for q in ("p50", "p90")
                                           for ref in ("before", "after", "idle")),
                         f"{run['round']['round_cpu_share']:.2f}",
                         "yes" if run["round"]["running_at_end"] else "NO (phase invalid)"]
                        for run in report["runs"] for c, r in run["ratios"].items()],
                       align="rrrrrrrrrl"),
    ]
    return "\n".join(lines)


def run_benchmark(cfg: BenchConfig) -> dict:
    report = {"machine": machine_info("vllm"), "config": asdict(cfg), "load_before": uptime(), "runs": []}
    tmp = Path(tempfile.mkdtemp(prefix="bench-round-ttft-"))
    try:
        for nice in cfg.nice:
            run = run_nice(cfg, nice, source=cfg.data_dir, tmp=tmp)
            run["ratios"] = ratios(run)
            report["runs"].append(run)
    except BaseException:
        print(f"Kept the app logs and data dirs in {tmp}", file=sys.stderr, flush=True)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    report["load_after"] = uptime()
    report["finished_utc"] = utc_now()
    return report


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(argv)
    # A plain `kill` of the benchmark should still stop the app (and its round): turn SIGTERM into an
    # exception so the `finally` blocks run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = run_benchmark(cfg)
    report["markdown"] = report_markdown(report)
    write_results(report, cfg.out, indent=2)
    print(report["markdown"])
    print(f"\nJSON: {cfg.out}", file=sys.stderr)


if __name__ == "__main__":  # the app is a subprocess, but vLLM imports must never re-run main
    main()
