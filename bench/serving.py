"""Serving benchmark: our app (vLLM in-process + FastAPI + SQLite) against vLLM's own OpenAI server,
measured with vLLM's own benchmark client (`vllm bench serve`; its `add_cli_args`/`main_async`, as
the CPU wheel's `vllm` script cannot find its package metadata).

    python bench/serving.py                       # app vs raw at concurrency 1, 16, 64: ~15 min on 2 idle cores
    python bench/serving.py --adapter             # the app serving an adapter vs the base model, A/B/A/B
    python bench/serving.py --quick               # smoke run

Both sides run the same engine arguments (the ones `serving.engine.vllm_cli_args` builds), the same
environment (VLLM_CPU_KVCACHE_SPACE and VLLM_CPU_OMP_THREADS_BIND pinned alike), vLLM's random
dataset (128 prompt tokens, 64 output tokens, ignore_eos, temperature 0, one seed), so every request
produces exactly the same work and the only difference is what sits between client and engine.
Both servers are up at once but measured one at a time (an idle vLLM server waits on its sockets),
phases alternating app/raw within each concurrency level of each repeat, so drift over the run falls
on both sides alike; the medians over repeats are reported with app/raw ratios, as a Markdown table
(for BENCHMARKS.md) and JSON.

`--adapter`: one app, a round-shaped adapter (rank 16 on every linear layer) registered; phases
alternate between it active and the base model active (A/B/A/B, `POST /api/adapters/.../activate`),
once with the adapter merged into the weights (the default) and once served as a LoRA
(`--no-merge-active-adapter`), so both ratios come from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import signal
import statistics
import subprocess
import sys
import tempfile
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

from bench.common import (free_port, log_tail, machine_info, machine_line, stop_group, wait_healthy,  # noqa: E402
                          write_results)
from common.flags import add_dataclass_args, from_namespace  # noqa: E402
from serving.config import EngineConfig  # noqa: E402

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
        default=16,  # ~25 s at concurrency 1 on 2 idle cores
        metadata={"help": "Requests in each measured phase; at concurrency c at least 2*c, so every "
                          "client slot is refilled once and the batch stays full."},
    )
    input_len: int = field(
        default=128,
        metadata={"help": "Prompt tokens per request (vLLM's random dataset)."},
    )
    max_tokens: int = field(
        default=64,  # a short chat answer; ignore_eos makes every request produce exactly this many
        metadata={"help": "Output tokens per request."},
    )
    concurrency: list[int] = field(
        default_factory=lambda: [1, 16, 64],  # one user alone, a busy batch, the engine's max_num_seqs
        metadata={"help": "Concurrency levels (vLLM client's --max-concurrency)."},
    )
    sequential: bool = field(
        default=False,
        metadata={"help": "App vs raw: run one server after the other instead of both up, alternating phases."},
    )
    adapter: bool = field(
        default=False,
        metadata={"help": "Measure the app with an adapter active against the base model (A/B/A/B), "
                          "merged and as a LoRA, instead of app against raw vLLM."},
    )
    repeats: int = field(
        default=3,  # the median of 3 damps other jobs on the shared machine
        metadata={"help": "Measured phases per side and concurrency level; medians are reported."},
    )
    warmup: int = field(
        default=4,  # first requests pay for lazy init and cold caches; not measured
        metadata={"help": "Unmeasured requests sent before each measured phase (vLLM client's --num-warmups)."},
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


QUICK = {"requests": 8, "concurrency": [1, 4], "repeats": 1, "warmup": 2, "max_tokens": 16}


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

def engine_flags(engine: EngineConfig) -> list[str]:
    """EngineConfig -> app.py flags, so the app runs exactly the engine config the raw side gets."""
    flags = []
    for f in dataclasses.fields(engine):
        name, value = f.name.replace("_", "-"), getattr(engine, f.name)
        flags += [f"--{name}" if value else f"--no-{name}"] if isinstance(value, bool) else [f"--{name}", str(value)]
    return flags


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


ADMIN = ("admin", "bench-admin-pw")  # --adapter: the app's one user, allowed to activate adapters


def server_command(side: str, *, engine: EngineConfig, data_dir: Path, model_path: str, port: int) -> list[str]:
    from serving.engine import vllm_cli_args
    from common.models import DEFAULT_MODEL, served_name

    if side.startswith("app"):
        auth = ["--auth", f"{ADMIN[0]}:{ADMIN[1]}", "--admin", ADMIN[0]] if side != "app" else []
        return [sys.executable, str(ROOT / "app.py"), "--data-dir", str(data_dir), "--port", str(port),
                "--host", "127.0.0.1", "--align-every", "0", *auth, *engine_flags(engine)]
    # The same parser (make_arg_parser) and argument list the app's Engine.start uses in-process.
    return [sys.executable, "-m", "vllm.entrypoints.launchers.api_server.entry",
            *vllm_cli_args(engine, model_path=model_path, served_name=served_name(DEFAULT_MODEL)),
            "--host", "127.0.0.1", "--port", str(port)]


def server_env(engine: EngineConfig) -> dict[str, str]:
    from serving.engine import cpu_cores_bind

    env = dict(os.environ)
    # The app only setdefault()s these; pinning them here gives both sides the same KV cache and
    # the same cores (vLLM alone would keep one of two cores free for itself), and a value the
    # user exported wins on both sides alike. vLLM 0.32 parses the cache size with int(): "2", not "2.0".
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{engine.kv_cache_gib:g}")
    env.setdefault("VLLM_CPU_OMP_THREADS_BIND", cpu_cores_bind(engine.cpu_cores))
    env["PYTHONUNBUFFERED"] = "1"  # log lines reach the log file before a crash
    return env


def health_path(side: str) -> str:
    return "/healthz" if side.startswith("app") else "/health"


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

def client_args(cfg: BenchConfig, *, base_url: str, model: str, model_path: str, concurrency: int,
                headers: list[str], requests: int):
    """vLLM's benchmark client, configured as `vllm bench serve` would be from its command line."""
    from vllm.benchmarks.serve import add_cli_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    argv = ["--backend", "openai-chat", "--base-url", base_url, "--endpoint", "/v1/chat/completions",
            "--model", model, "--tokenizer", model_path, "--dataset-name", "random",
            "--random-input-len", str(cfg.input_len), "--random-output-len", str(cfg.max_tokens),
            "--num-prompts", str(requests), "--max-concurrency", str(concurrency),
            "--ignore-eos", "--temperature", "0", "--num-warmups", "0", "--seed", "0",
            "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90", "--disable-tqdm"]
    if headers:
        argv += ["--header", *headers]
    return parser.parse_args(argv)


def measure_phase(cfg: BenchConfig, server: Server, *, model: str, model_path: str, concurrency: int,
                  headers: list[str] = (), requests: int | None = None) -> dict:
    """One measured phase with vLLM's client; the server's CPU time is read around it."""
    from vllm.benchmarks.serve import main_async

    args = client_args(cfg, base_url=server.base_url, model=model, model_path=model_path, concurrency=concurrency,
                       headers=list(headers), requests=requests or max(cfg.requests, 2 * concurrency))
    cpu_before = group_cpu_s(server.pgid)
    with contextlib.redirect_stdout(sys.stderr):  # its own report goes to the log, ours to stdout
        result = asyncio.run(main_async(args))
    cpu_s = group_cpu_s(server.pgid) - cpu_before
    if result["failed"]:
        raise RuntimeError(f"[{server.side}] {result['failed']} requests failed at concurrency {concurrency}.")
    return {
        "requests": result["completed"],
        "output_tokens": result["total_output_tokens"],
        "wall_s": result["duration"],
        "tokens_per_s": result["output_throughput"],
        "server_cpu_ms_per_token": cpu_s * 1000 / result["total_output_tokens"],
        "ttft_p50_ms": result["median_ttft_ms"],
        "ttft_p90_ms": result["p90_ttft_ms"],
        "tpot_p50_ms": result["median_tpot_ms"],
        "e2e_p50_ms": result["median_e2el_ms"],
        "load_avg_1m": os.getloadavg()[0],
    }


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


def median_metrics(phases: list[dict]) -> dict:
    keys = ("tokens_per_s", "server_cpu_ms_per_token", "ttft_p50_ms", "ttft_p90_ms", "tpot_p50_ms", "e2e_p50_ms",
            "wall_s", "load_avg_1m")
    return {k: statistics.median(p[k] for p in phases) for k in keys}


def log_phase(label: str, r: int, cfg: BenchConfig, c: int, m: dict) -> None:
    print(f"[{label}] repeat {r + 1}/{cfg.repeats} c={c}: {m['tokens_per_s']:.1f} tok/s, "
          f"{m['server_cpu_ms_per_token']:.1f} CPU ms/token, TTFT p50 {m['ttft_p50_ms']:.0f} ms, "
          f"TPOT p50 {m['tpot_p50_ms']:.1f} ms, load {m['load_avg_1m']:.2f}", file=sys.stderr, flush=True)


def warm_up(cfg: BenchConfig, server: Server, *, model: str, model_path: str, headers: list[str] = ()) -> None:
    """First requests pay for lazy initialisation and cold caches: an unmeasured phase."""
    if cfg.warmup:
        measure_phase(cfg, server, model=model, model_path=model_path, concurrency=min(cfg.warmup, 4),
                      headers=headers, requests=cfg.warmup)


def measure_side(server: Server, cfg: BenchConfig, *, model: str, model_path: str) -> dict:
    """`repeats` rounds over all concurrency levels. Returns, per level, every phase and the medians."""
    warm_up(cfg, server, model=model, model_path=model_path)
    phases: dict[int, list[dict]] = {c: [] for c in cfg.concurrency}
    for r in range(cfg.repeats):
        for c in cfg.concurrency:
            phases[c].append(measure_phase(cfg, server, model=model, model_path=model_path, concurrency=c))
            log_phase(server.side, r, cfg, c, phases[c][-1])
    return {str(c): {"median": median_metrics(p), "phases": p} for c, p in phases.items()}


# ---------------------------------------------------------------------------- report

def setup_line(report: dict) -> str:
    m, cfg, env = report["machine"], report["config"], report["env"]
    return (f"Machine: {machine_line(m)}, no GPU; vLLM {m['vllm']}, "
            f"Python {m['python']}; VLLM_CPU_OMP_THREADS_BIND={env['VLLM_CPU_OMP_THREADS_BIND']} and "
            f"VLLM_CPU_KVCACHE_SPACE={env['VLLM_CPU_KVCACHE_SPACE']} on every server. vLLM's benchmark client, "
            f"random dataset: {cfg['input_len']} prompt tokens, {cfg['max_tokens']} output tokens (ignore_eos, "
            f"temperature 0); medians of {cfg['repeats']} measured phases per side and concurrency, "
            f"{ORDER[('adapter' if cfg['adapter'] else 'sequential' if cfg.get('sequential') else 'alternating')]}. "
            f"CPU ms/token: CPU time of the server's whole process group per output token.")


ORDER = {
    "alternating": "app and raw alternating within each concurrency level (both servers up, one measured at a time)",
    "sequential": "app measured first, then raw (one server at a time)",
    "adapter": "one app per way of serving the adapter; adapter active and base model active alternating within "
               "each concurrency level",
}


def markdown_table(report: dict) -> str:
    cfg = report["config"]
    sides = list(report["sides"])
    lines = [setup_line(report), "",
             "| side | concurrency | output tok/s | CPU ms/token | TTFT p50 (ms) | TTFT p90 (ms) | TPOT p50 (ms) "
             "| latency p50 (ms) | load avg (1m) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in map(str, cfg["concurrency"]):
        for side in sides:
            s = report["sides"][side][c]["median"]
            lines.append(f"| {side} | {c} | {s['tokens_per_s']:.1f} | {s['server_cpu_ms_per_token']:.1f} | "
                         f"{s['ttft_p50_ms']:.0f} | {s['ttft_p90_ms']:.0f} | {s['tpot_p50_ms']:.1f} | "
                         f"{s['e2e_p50_ms']:.0f} | {s['load_avg_1m']:.2f} |")
    for name, ratios in report["ratios"].items():
        lines += ["", f"{name}:", "",
                  "| concurrency | throughput ratio | CPU per token ratio | TTFT p50 difference (ms) "
                  "| TPOT p50 difference (ms) |", "|---:|---:|---:|---:|---:|"]
        for c, r in ratios.items():
            lines.append(f"| {c} | {r['throughput_ratio']:.3f} | {r['cpu_per_token_ratio']:.3f} | "
                         f"{r['added_ttft_ms']:+.0f} | {r['added_tpot_ms']:+.1f} |")
    return "\n".join(lines)


def compare(sides: dict, a: str, b: str, concurrency: list[int]) -> dict:
    """Side a against side b, per concurrency level (medians)."""
    ratios = {}
    for c in map(str, concurrency):
        x, y = sides[a][c]["median"], sides[b][c]["median"]
        ratios[c] = {
            "throughput_ratio": x["tokens_per_s"] / y["tokens_per_s"],
            "cpu_per_token_ratio": x["server_cpu_ms_per_token"] / y["server_cpu_ms_per_token"],
            "added_ttft_ms": x["ttft_p50_ms"] - y["ttft_p50_ms"],
            "added_tpot_ms": x["tpot_p50_ms"] - y["tpot_p50_ms"],
        }
    return ratios


# ---------------------------------------------------------------------------- main

def app_vs_raw(cfg: BenchConfig, report: dict, *, engine: EngineConfig, data_dir: Path, model_path: str,
               model: str, tmp: Path) -> None:
    """Both servers up at once, measured one at a time, A/B within each level of each repeat, so
    drift over the run (the machine warming up, other jobs) falls on both sides alike. An idle
    server waits on its sockets and costs the measured one nothing; `--sequential` runs them one
    after the other instead."""
    if cfg.sequential:
        for side in SIDES:
            with running_server(side, engine=engine, data_dir=data_dir, model_path=model_path, log_dir=tmp,
                                startup_timeout_s=cfg.startup_timeout_s) as server:
                report["startup_s"][side] = server.startup_s
                report["sides"][side] = measure_side(server, cfg, model=model, model_path=model_path)
    else:
        with contextlib.ExitStack() as stack:
            servers = {side: stack.enter_context(running_server(
                side, engine=engine, data_dir=data_dir, model_path=model_path, log_dir=tmp,
                startup_timeout_s=cfg.startup_timeout_s)) for side in SIDES}
            phases = {side: {c: [] for c in cfg.concurrency} for side in SIDES}
            for side, server in servers.items():
                report["startup_s"][side] = server.startup_s
                warm_up(cfg, server, model=model, model_path=model_path)
            for r in range(cfg.repeats):
                for c in cfg.concurrency:
                    for side in (SIDES if r % 2 == 0 else SIDES[::-1]):  # neither side always goes first
                        m = measure_phase(cfg, servers[side], model=model, model_path=model_path, concurrency=c)
                        phases[side][c].append(m)
                        log_phase(side, r, cfg, c, m)
        for side, per_c in phases.items():
            report["sides"][side] = {str(c): {"median": median_metrics(p), "phases": p} for c, p in per_c.items()}
    report["ratios"] = {"app / raw vLLM": compare(report["sides"], "app", "raw", cfg.concurrency)}


def round_like_adapter(model_path: str, out_dir: Path) -> str:
    """A LoRA shaped like a round's (align/config.py: rank, alpha, every linear layer), random B."""
    from align.config import LLAMA_LINEAR_MODULES, SFTConfig
    from bench.swap import make_adapter

    lora = SFTConfig()
    return make_adapter(model_path, out_dir, seed=0, rank=lora.lora_r, alpha=lora.lora_alpha,
                        target_modules=tuple(LLAMA_LINEAR_MODULES), b_std=0.01)


def activate(server: Server, version: int | str) -> None:
    import httpx

    r = httpx.post(f"{server.base_url}/api/adapters/{version}/activate", auth=ADMIN, timeout=120,
                   headers={"Origin": server.base_url})
    r.raise_for_status()


def adapter_vs_base(cfg: BenchConfig, report: dict, *, engine: EngineConfig, data_dir: Path, model_path: str,
                    model: str, tmp: Path) -> None:
    """Per app (merged, LoRA): A/B/A/B phases, the adapter active vs the base model active."""
    import base64

    from storage.store import FeedbackStore

    with FeedbackStore.open(data_dir) as store:
        version = store.registry.register_adapter(path=round_like_adapter(model_path, tmp / "adapter"), base_model=model)
    headers = ["Authorization=Basic " + base64.b64encode(f"{ADMIN[0]}:{ADMIN[1]}".encode()).decode()]
    ratios = {}
    for merge in (True, False):
        how = "merged" if merge else "LoRA"
        label = {True: f"app, adapter {how}", False: f"app, base ({how} run)"}
        phases = {key: {c: [] for c in cfg.concurrency} for key in label.values()}
        with running_server(f"app-{how}", engine=dataclasses.replace(engine, merge_active_adapter=merge),
                            data_dir=data_dir, model_path=model_path, log_dir=tmp,
                            startup_timeout_s=cfg.startup_timeout_s) as server:
            report["startup_s"][how] = server.startup_s
            activate(server, version)
            warm_up(cfg, server, model=model, model_path=model_path, headers=headers)
            for r in range(cfg.repeats):
                for c in cfg.concurrency:
                    for active in (True, False):  # A/B within each level, so both see the same load
                        activate(server, version if active else "base")
                        m = measure_phase(cfg, server, model=model, model_path=model_path, concurrency=c,
                                          headers=headers)
                        phases[label[active]][c].append(m)
                        log_phase(label[active], r, cfg, c, m)
        for key, per_c in phases.items():
            report["sides"][key] = {str(c): {"median": median_metrics(p), "phases": p} for c, p in per_c.items()}
        ratios[f"adapter {how} / base model (same app)"] = compare(report["sides"], label[True], label[False],
                                                                   cfg.concurrency)
    report["ratios"] = ratios


def run_benchmark(cfg: BenchConfig) -> dict:
    from serving.engine import vllm_cli_args
    from common.models import DEFAULT_MODEL, served_name

    engine = EngineConfig()  # the app's defaults, handed to both sides explicitly
    model = served_name(DEFAULT_MODEL)
    env = server_env(engine)
    report = {"machine": machine_info("vllm"), "config": dataclasses.asdict(cfg), "engine": dataclasses.asdict(engine),
              "env": {k: env[k] for k in ("VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_KVCACHE_SPACE")},
              "sides": {}, "startup_s": {}}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        data_dir, model_path = prepare_data_dir(cfg.data_dir, Path(tmp))
        report["vllm_args"] = vllm_cli_args(engine, model_path=model_path, served_name=model)
        measure = adapter_vs_base if cfg.adapter else app_vs_raw
        measure(cfg, report, engine=engine, data_dir=data_dir, model_path=model_path, model=model, tmp=Path(tmp))
    return report


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(argv)
    # A plain `kill` of the benchmark should still stop the servers: turn SIGTERM into an
    # exception so the `finally` blocks run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = run_benchmark(cfg)
    table = markdown_table(report)
    report["markdown"] = table
    write_results(report, cfg.out, indent=2)
    print(table)
    print(f"\nJSON: {cfg.out}", file=sys.stderr)


if __name__ == "__main__":  # the servers are subprocesses, but vLLM imports must never re-run main
    main()
