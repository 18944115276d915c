"""Hot-swap benchmark: how long after a promotion new requests are answered by the new adapter, and
how many requests fail, while 16 clients stream without pause; compared with restarting the engine.

    python bench/swap.py                  # 5 swaps and 2 restarts: 23 minutes on the busy 2-core machine
    python bench/swap.py --swaps 2 --restarts 1 --max-tokens 8   # smoke run

Everything runs in this process, as in app.py: the app's Engine (in-process vLLM), ChatService
(every answer stored in a temporary SQLite store with the adapter that served it) and
AdapterManager (the admin's promote and rollback). The clients call ChatService.stream directly,
so the figures are the engine's and ours, without HTTP.

Before the swaps, both adapters are loaded with `AdapterManager.prepare` under the same load, as the
app does when a round registers a candidate (that time is reported apart: it is not on the promotion
path). Hot swap: `AdapterManager.activate(version)` while the clients run; per swap, the time until
activate() returns and the time from the call to the first token of a request started after it and
served by the new adapter. Restart: what a deploy without hot-swap does: stop the engine (requests in
flight are cut off), start a new one and restore the promoted adapter, as app.py does at start-up;
downtime runs from the stop to the first token served by the new engine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import gc
import json
import os
import platform
import random
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# `python bench/swap.py` puts bench/ first on sys.path, where bench/serving.py would shadow the
# `serving` package; the repository root must come first instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from align.config import LLAMA_LINEAR_MODULES  # noqa: E402
from bench.common import machine_info, write_results  # noqa: E402
from common.flags import add_dataclass_args, from_namespace  # noqa: E402
from serving.config import EngineConfig  # noqa: E402

# Varied, so prefills differ and the prefix cache does not make every new request free.
PROBE_PROMPT = "Name one colour."
PROMPTS = [
    "What is the capital of France?",
    "Explain photosynthesis in one sentence.",
    "Write a haiku about the sea.",
    "How do I reverse a list in Python?",
    "Why is the sky blue?",
    "Give me three tips for better sleep.",
    "What does HTTP stand for?",
    "How many legs does a spider have?",
]


@dataclass
class SwapBenchConfig:
    """What one run measures: the load, how many swaps and restarts, and where results go."""

    data_dir: str = field(
        default="./data",  # the app's default data dir, where `make model` prepares the weights
        metadata={"help": "Data dir holding models/SmolLM2-135M-Instruct (prepared there if missing); "
                          "the store and the adapters are temporary."},
    )
    streams: int = field(
        default=16,  # the load: 16 clients, well under the engine's max_num_seqs=64
        metadata={"help": "Concurrent streaming clients, each sending its next request as soon as the last ends "
                          "(0: none, the probe requests alone: concurrency 1)."},
    )
    max_tokens: int = field(
        default=16,  # short answers: clients turn over often, so a new request follows a swap soon
        metadata={"help": "Mean output tokens per request: each asks for a seeded random length in "
                          "[max_tokens/2, 3*max_tokens/2] (greedy, ignore_eos), so the clients do not "
                          "move in lockstep and requests keep arriving between their waves."},
    )
    swaps: int = field(
        default=5,  # base->a->b->a->b->base: two first activations, two reactivations, a rollback
        metadata={"help": "Hot swaps: alternately adapters a and b, the last one back to the base model (>= 2)."},
    )
    restarts: int = field(
        default=2,  # each costs a full engine start (~1 min); the median of 2 damps other jobs a little
        metadata={"help": "Engine restarts (stop + start with the next adapter) measured after the swaps."},
    )
    gap_s: float = field(
        default=0.5,  # a promotion comes minutes after the last in the app; here it must not come at a chosen moment
        metadata={"help": "Seconds between one measurement and the next: between the no-swap probes, and "
                          "from the moment a swap's old requests have all ended to the next swap. Without it "
                          "a swap would come exactly when a client, its last old request just ended, sends "
                          "its next one (and, after the first swap, while that swap's deferred merge runs): "
                          "every probe would share its first step with a fresh prefill."},
    )
    adapter_shape: str = field(
        default="tests",  # what every earlier run of this bench used, so results stay comparable
        metadata={"help": "The two adapters swapped: 'tests' (rank 8 on q_proj and v_proj, random B, as the "
                          "engine tests make them) or 'round' (rank 16 on all seven linear modules, what a "
                          "round trains: a larger LoRA for the new version while the old one drains)."},
    )
    kv_cache_gib: int = field(
        default=1,  # 16 short streams use a few MiB of KV; the app's 2 GiB would only take memory from other jobs
        metadata={"help": "CPU KV cache in GiB; every other engine setting is the app's default EngineConfig."},
    )
    warmup_requests: int = field(
        default=32,  # two per client: lazy init is paid, and the random lengths have spread the clients out
        metadata={"help": "Requests that must finish before the first swap."},
    )
    timeout_s: float = field(
        default=600.0,  # generous on a shared 2-core machine; a hang should still end the run
        metadata={"help": "Seconds any one wait for the clients (warm-up, a swap or restart settling) may take."},
    )
    out: str = field(
        default=str(ROOT / "bench" / "results" / "swap.json"),
        metadata={"help": "Where to write the results as JSON (folders are created)."},
    )


def parse_config(argv: list[str] | None = None) -> SwapBenchConfig:
    parser = argparse.ArgumentParser(description="Time adapter hot-swaps under load and compare with restarts.")
    add_dataclass_args(parser, SwapBenchConfig)
    cfg = from_namespace(SwapBenchConfig, parser.parse_args(argv))
    if cfg.swaps < 2 or cfg.restarts < 0 or cfg.streams < 0 or cfg.max_tokens < 1:
        parser.error("--swaps must be at least 2; --max-tokens positive; --streams and --restarts not negative.")
    if cfg.adapter_shape not in ADAPTER_SHAPES:
        parser.error(f"--adapter-shape must be one of {', '.join(ADAPTER_SHAPES)}.")
    if cfg.streams == 0 and cfg.restarts:
        parser.error("--restarts needs clients (--streams 1 or more) to measure the downtime they see.")
    return cfg


# ---------------------------------------------------------------------------- adapters

ADAPTER_SHAPES = {  # --adapter-shape -> make_adapter's rank and modules
    "tests": {"rank": 8, "alpha": 16, "target_modules": ("q_proj", "v_proj")},
    "round": {"rank": 16, "alpha": 32, "target_modules": tuple(LLAMA_LINEAR_MODULES)},
}


def make_adapter(model_path: str, out_dir: Path, *, seed: int, rank: int = 8, alpha: int = 16,
                 target_modules: tuple[str, ...] = ("q_proj", "v_proj"), b_std: float = 0.5) -> str:
    """A PEFT LoRA for the base model with random B matrices (as the engine tests make them), so it
    really changes the answers; the seed makes adapters a and b differ."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(target_modules), init_lora_weights=False)
    model = get_peft_model(base, config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, b_std)
    model.save_pretrained(out_dir)
    return str(out_dir)


def swap_targets(n: int, a: int, b: int) -> list[int | None]:
    """a, b, a, b, ... and the last swap a rollback to the base model (None)."""
    return [(a, b)[i % 2] for i in range(n - 1)] + [None]


# ---------------------------------------------------------------------------- load

@dataclass
class Request:
    """One client request as the client saw it (perf_counter seconds)."""

    start: float
    engine: int  # which engine generation took it (restarts count up)
    version: int | None = None  # the adapter that served it, as its first chunk says
    first_token: float | None = None
    end: float | None = None
    error: str | None = None


@dataclass
class Load:
    """`streams` clients sending streaming requests back to back through whichever ChatService
    serves; while `up` is clear (an engine restart) they wait instead of sending."""

    cfg: SwapBenchConfig
    chat: object = None  # serving.chat.ChatService of the running engine
    engine_gen: int = 0
    requests: list[Request] = field(default_factory=list)
    in_flight: set = field(default_factory=set)
    up: asyncio.Event = field(default_factory=asyncio.Event)
    stop: bool = False

    async def one_request(self, record: Request, prompt: str, max_tokens: int) -> None:
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

        request = ChatCompletionRequest(messages=[{"role": "user", "content": prompt}], model=None, stream=True,
                                        temperature=0, max_tokens=max_tokens, ignore_eos=True)
        async for event in self.chat.stream(request, user="bench", source="api"):
            for choice in event.chunk["choices"]:
                if "response_id" in choice:
                    record.version = event.chunk.get("adapter_version")
                if record.first_token is None and (choice.get("delta") or {}).get("content"):
                    record.first_token = time.perf_counter()
        record.end = time.perf_counter()

    async def client(self, index: int) -> None:
        lengths = random.Random(index)  # seeded: the same load on every run
        low, high = max(1, self.cfg.max_tokens // 2), self.cfg.max_tokens * 3 // 2
        turn = 0
        while True:
            await self.up.wait()
            if self.stop:
                return
            record = Request(start=time.perf_counter(), engine=self.engine_gen)
            self.requests.append(record)
            task = asyncio.create_task(self.one_request(record, PROMPTS[(index + turn) % len(PROMPTS)],
                                                        lengths.randint(low, high)))
            self.in_flight.add(task)
            await asyncio.wait({task})  # never raises: a cut-off or failed request is recorded below
            self.in_flight.discard(task)
            if task.cancelled():
                record.error = "cut off by the engine restart"
            elif task.exception() is not None:
                record.error = repr(task.exception())
                await asyncio.sleep(0.1)  # a failing engine is not hammered; failures stay countable
            turn += 1

    async def probe(self) -> Request:
        """One short request sent now, beside the clients (not one of them): what a user who asks
        right at that moment gets. Not counted in `requests`."""
        record = Request(start=time.perf_counter(), engine=self.engine_gen)
        try:
            await self.one_request(record, PROBE_PROMPT, max_tokens=4)
        except Exception as exc:  # counted as a failure by the caller, never hidden
            record.error = repr(exc)
        return record

    def finished(self) -> list[Request]:
        return [r for r in self.requests if r.end is not None or r.error is not None]

    def failed(self) -> int:
        return sum(r.error is not None for r in self.requests)

    async def wait_for(self, condition, what: str) -> None:
        deadline = time.perf_counter() + self.cfg.timeout_s
        while not condition():
            if time.perf_counter() > deadline:
                raise TimeoutError(f"Waited {self.cfg.timeout_s:.0f} s for {what}.")
            await asyncio.sleep(0.01)  # only when to go on; the timings come from the clients' own stamps

    def first_served(self, since: float, *, version=..., engine: int | None = None) -> Request | None:
        """The earliest first token of a request started at or after `since` (by that adapter
        version, or on that engine generation)."""
        hits = [r for r in self.requests if r.start >= since and r.first_token is not None
                and (version is ... or r.version == version) and (engine is None or r.engine == engine)]
        return min(hits, key=lambda r: r.first_token, default=None)


# ---------------------------------------------------------------------------- measurements

async def measure_swap(load: Load, manager, target: int | None, *, first_activation: bool) -> dict:
    """One promotion (or rollback) under load; waits until the new model has served and every
    request of the old one has ended, so swaps do not overlap."""
    failed_before = load.failed()
    call = time.perf_counter()
    await manager.activate(target, by="bench")
    returned = time.perf_counter()
    probe = await load.probe()  # a request that arrives right at the promotion
    if load.cfg.streams == 0:  # no clients: the probe is the first request after the swap
        first = probe
    else:
        await load.wait_for(lambda: load.first_served(call, version=target) is not None,
                            f"a first token from {target or 'the base model'}")
        first = load.first_served(call, version=target)
    await load.wait_for(lambda: all(r.end or r.error for r in load.requests if r.start < returned),
                        "the old model's requests to end")
    return {
        "to": target, "first_activation": first_activation,
        "activate_ms": (returned - call) * 1000,
        "first_token_ms": (first.first_token - call) * 1000,
        # ... of which: until that request was sent (a client had to free up), and its own TTFT.
        "next_request_ms": (first.start - call) * 1000,
        "its_ttft_ms": (first.first_token - first.start) * 1000,
        "probe_first_token_ms": (probe.first_token - call) * 1000 if probe.first_token else None,
        "probe_ttft_ms": (probe.first_token - probe.start) * 1000 if probe.first_token else None,
        "probe_served_by_new_model": probe.version == target and probe.error is None,
        "in_flight_at_swap": sum(1 for r in load.requests if r.start < call and (r.end or 0) > returned),
        "failed": load.failed() - failed_before + (probe.error is not None),
    }


async def measure_restart(load: Load, stack: contextlib.AsyncExitStack, start_app, store, target: int) -> dict:
    """Stop the engine with the clients running (in-flight requests are cut off, new ones wait),
    then start a fresh one that restores the promoted adapter, as app.py does at start-up."""
    store.registry.set_adapter_status(target, "active")  # the promotion a restart would pick up
    failed_before = load.failed()
    call = time.perf_counter()
    load.up.clear()
    cut = list(load.in_flight)
    for task in cut:
        task.cancel()
    await asyncio.gather(*cut, return_exceptions=True)
    await stack.aclose()
    stopped = time.perf_counter()
    load.engine_gen += 1
    load.chat = await start_app(stack)
    started = time.perf_counter()
    load.up.set()
    generation = load.engine_gen
    await load.wait_for(lambda: load.first_served(call, engine=generation) is not None,
                        "a first token from the restarted engine")
    first = load.first_served(call, engine=generation)
    if first.version != target:
        raise RuntimeError(f"The restarted engine served v{first.version}, not the promoted v{target}.")
    # Under load again (every client has had an answer from the new engine) before going on.
    await load.wait_for(lambda: sum(r.engine == generation and r.end is not None for r in load.requests)
                        >= load.cfg.streams, "the restarted engine to serve every client")
    return {
        "to": target, "stop_ms": (stopped - call) * 1000, "start_ms": (started - stopped) * 1000,
        "downtime_ms": (first.first_token - call) * 1000,
        "failed": load.failed() - failed_before,
    }


async def run_load(cfg: SwapBenchConfig, *, model_path: str, tmp: Path) -> dict:
    from serving.adapters import AdapterConfig, AdapterManager
    from serving.chat import ChatService
    from serving.config import SamplingConfig
    from serving.engine import Engine
    from common.models import DEFAULT_MODEL_NAME
    from storage.store import FeedbackStore

    engine_cfg = EngineConfig(kv_cache_gib=cfg.kv_cache_gib)
    store = FeedbackStore.open(tmp / "data")
    shape = ADAPTER_SHAPES[cfg.adapter_shape]
    a = store.registry.register_adapter(path=make_adapter(model_path, tmp / "a", seed=1, **shape),
                                        base_model=DEFAULT_MODEL_NAME)
    b = store.registry.register_adapter(path=make_adapter(model_path, tmp / "b", seed=2, **shape),
                                        base_model=DEFAULT_MODEL_NAME)
    sampling = SamplingConfig(max_tokens_limit=max(cfg.max_tokens, SamplingConfig().max_tokens_limit))
    managers = []

    async def start_app(stack: contextlib.AsyncExitStack):
        """Engine + AdapterManager.restore() + ChatService, as app.py wires them; returns the ChatService."""
        engine = await stack.enter_async_context(
            Engine.start(engine_cfg, model_path=model_path, served_name=DEFAULT_MODEL_NAME))
        managers.append(AdapterManager(engine=engine, store=store, cfg=AdapterConfig()))
        await managers[-1].restore()
        return ChatService(engine=engine, store=store, sampling=sampling)

    load = Load(cfg=cfg)
    clients = []
    async with contextlib.AsyncExitStack() as stack:
        started = time.perf_counter()
        load.chat = await start_app(stack)
        first_start_ms = (time.perf_counter() - started) * 1000
        load.up.set()
        clients = [asyncio.create_task(load.client(i)) for i in range(cfg.streams)]
        try:
            if cfg.streams:
                await load.wait_for(lambda: len(load.finished()) >= cfg.warmup_requests, "the warm-up requests")
            else:  # concurrency 1: the probes warm the engine up themselves
                for _ in range(cfg.warmup_requests // 4):
                    await load.probe()
            # As the app does when a round registers a candidate (RoundSupervisor.judge_candidates):
            # the load from disk happens before the promotion, under the same load.
            prepare_ms = {}
            for version in (a, b):
                t = time.perf_counter()
                await managers[-1].prepare(version)
                prepare_ms[version] = (time.perf_counter() - t) * 1000
                print(f"[prepare] v{version}: {prepare_ms[version]:.0f} ms", file=sys.stderr, flush=True)
            # The same probe without a swap: the TTFT any request gets under this load.
            baseline = []
            for _ in range(cfg.swaps):
                probe = await load.probe()
                baseline.append((probe.first_token - probe.start) * 1000 if probe.first_token else None)
                await asyncio.sleep(cfg.gap_s)
            warm = time.perf_counter()
            swaps, activated = [], {None}  # the base model served first
            for target in swap_targets(cfg.swaps, a, b):
                await asyncio.sleep(cfg.gap_s)
                swaps.append(await measure_swap(load, managers[-1], target, first_activation=target not in activated))
                activated.add(target)
                print(f"[swap] -> {target or 'base'}: {swaps[-1]}", file=sys.stderr, flush=True)
            # Summarised now: requests still in flight are cut off by the first restart, which counts them.
            swap_phase = request_summary([r for r in load.requests if r.start >= warm])
            restarts = []
            for i in range(cfg.restarts):
                restarts.append(await measure_restart(load, stack, start_app, store, (a, b)[i % 2]))
                print(f"[restart] -> v{restarts[-1]['to']}: {restarts[-1]}", file=sys.stderr, flush=True)
        finally:
            load.stop = True
            load.up.set()
            await asyncio.gather(*clients, return_exceptions=True)
    stored = store.messages(role="assistant")
    store.close()
    return {
        "first_start_ms": first_start_ms,
        "prepare_ms": prepare_ms,
        "baseline_probe_ttft_ms": baseline,
        "swaps": swaps,
        "restarts": restarts,
        "swap_phase": swap_phase,
        "all_requests": request_summary(load.requests),
        "stored_answers": {s: sum(m.status == s for m in stored) for s in ("complete", "incomplete", "streaming")},
        "adapters": {"a": a, "b": b},
    }


def request_summary(requests: list[Request]) -> dict:
    done = [r for r in requests if r.end is not None]
    ttft = [(r.first_token - r.start) * 1000 for r in done if r.first_token is not None]
    return {
        "requests": len(requests), "completed": len(done), "failed": sum(r.error is not None for r in requests),
        "ttft_p50_ms": statistics.median(ttft) if ttft else None,
        "latency_p50_ms": statistics.median((r.end - r.start) * 1000 for r in done) if done else None,
        "errors": sorted({r.error for r in requests if r.error is not None}),
    }


# ---------------------------------------------------------------------------- report

def summarize(result: dict) -> dict:
    swaps, restarts = result["swaps"], result["restarts"]
    out = {
        "swap_first_token_p50_ms": statistics.median(s["first_token_ms"] for s in swaps),
        "swap_first_token_max_ms": max(s["first_token_ms"] for s in swaps),
        "swap_activate_p50_ms": statistics.median(s["activate_ms"] for s in swaps),
        "swap_next_request_p50_ms": statistics.median(s["next_request_ms"] for s in swaps),
        "swap_its_ttft_p50_ms": statistics.median(s["its_ttft_ms"] for s in swaps),
        "swap_probe_first_token_p50_ms": statistics.median(s["probe_first_token_ms"] for s in swaps),
        "swap_probe_ttft_p50_ms": statistics.median(s["probe_ttft_ms"] for s in swaps),
        "swap_probe_first_token_max_ms": max(s["probe_first_token_ms"] for s in swaps),
        "swap_probes_on_new_model": sum(s["probe_served_by_new_model"] for s in swaps),
        "baseline_probe_ttft_p50_ms": statistics.median(t for t in result["baseline_probe_ttft_ms"] if t is not None),
        "swap_failed": sum(s["failed"] for s in swaps),
        "steady_ttft_p50_ms": result["swap_phase"]["ttft_p50_ms"],
    }
    if restarts:
        out |= {
            "restart_downtime_p50_ms": statistics.median(r["downtime_ms"] for r in restarts),
            "restart_start_p50_ms": statistics.median(r["start_ms"] for r in restarts),
            "restart_failed": sum(r["failed"] for r in restarts),
        }
    return out


def markdown_table(report: dict) -> str:
    m, cfg, r, s = report["machine"], report["config"], report["result"], report["summary"]
    name = lambda v: "base" if v is None else f"v{v}"  # noqa: E731
    adapters = {v: k for k, v in r["adapters"].items()}
    label = lambda v: "base" if v is None else f"{adapters[v]} ({name(v)})"  # noqa: E731
    lines = [
        f"Machine: {m['nproc']} CPU cores (`nproc`), {m['cpu']}, no GPU; {m['date_utc']}; vLLM {m['vllm']}, "
        f"Python {m['python']}. Load average before: {report['load_before']}; after: {report['load_after']}.",
        f"{cfg['streams']} streaming clients back to back, {cfg['max_tokens'] // 2}-{cfg['max_tokens'] * 3 // 2} "
        f"greedy tokens per answer (seeded random, ignore_eos), SmolLM2-135M-Instruct with the app's EngineConfig defaults except a "
        f"{cfg['kv_cache_gib']} GiB KV cache; LoRA r8 on q/v.",
        "",
        "| swap | to | first activation | activate() returns (ms) | request sent at the promotion: first token (ms) "
        "| first token from new model to a client (ms) | = client's next request sent (ms) | + its TTFT (ms) "
        "| requests in flight across the swap | failed requests |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, sw in enumerate(r["swaps"], 1):
        lines.append(f"| {i} | {label(sw['to'])} | {'yes' if sw['first_activation'] else 'no'} | {sw['activate_ms']:.0f} | "
                     f"{sw['probe_first_token_ms']:.0f}{'' if sw['probe_served_by_new_model'] else ' (old model!)'} | "
                     f"{sw['first_token_ms']:.0f} | {sw['next_request_ms']:.0f} | {sw['its_ttft_ms']:.0f} | "
                     f"{sw['in_flight_at_swap']} | {sw['failed']} |")
    if r.get("prepare_ms"):
        lines += ["", "Loaded ahead with `AdapterManager.prepare()` under the same load, as the app does when a round "
                      "registers a candidate (not on the promotion path): "
                  + ", ".join(f"{label(int(v))} {ms:.0f} ms" for v, ms in r["prepare_ms"].items()) + "."]
    lines += ["", "| restart | to | stop (ms) | start + restore (ms) | downtime to first token (ms) | failed requests |",
              "|---:|---|---:|---:|---:|---:|"]
    for i, rs in enumerate(r["restarts"], 1):
        lines.append(f"| {i} | {label(rs['to'])} | {rs['stop_ms']:.0f} | {rs['start_ms']:.0f} | "
                     f"{rs['downtime_ms']:.0f} | {rs['failed']} |")
    lines += ["", "| way to change the served adapter | median time until the new model's first token (ms) "
                  "| failed requests |", "|---|---:|---:|",
              f"| hot swap (`AdapterManager.activate`), request sent at the promotion "
              f"| {s['swap_probe_first_token_p50_ms']:.0f} (max {s['swap_probe_first_token_max_ms']:.0f}) "
              f"| {s['swap_failed']} |",
              f"| hot swap, the clients' own next requests | {s['swap_first_token_p50_ms']:.0f} "
              f"(max {s['swap_first_token_max_ms']:.0f}) | |"]
    if r["restarts"]:
        lines.append(f"| engine restart (stop + start + restore) | {s['restart_downtime_p50_ms']:.0f} "
                     f"| {s['restart_failed']} |")
    lines.append(f"\nThe same short request sent without a swap, under the same load: median TTFT "
                 f"{s['baseline_probe_ttft_p50_ms']:.0f} ms ({len(r['baseline_probe_ttft_ms'])} requests); "
                 f"requests sent at a promotion served by the new model: {s['swap_probes_on_new_model']} of "
                 f"{len(r['swaps'])}.")
    lines.append(f"\nTTFT of the request sent right after activate() returned: median {s['swap_probe_ttft_p50_ms']:.0f} ms "
                 f"against {s['baseline_probe_ttft_p50_ms']:.0f} ms without a swap "
                 f"({s['swap_probe_ttft_p50_ms'] - s['baseline_probe_ttft_p50_ms']:+.0f} ms); the no-swap requests "
                 f"ranged {min(t for t in r['baseline_probe_ttft_ms'] if t is not None):.0f}-"
                 f"{max(t for t in r['baseline_probe_ttft_ms'] if t is not None):.0f} ms.")
    if s["steady_ttft_p50_ms"] is None:  # no clients (--streams 0): nothing more to put in scale
        return "\n".join(lines)
    lines.append(f"\nFor scale: median TTFT of every request in the swap phase {s['steady_ttft_p50_ms']:.0f} ms; "
                 f"median activate() {s['swap_activate_p50_ms']:.0f} ms; after a swap, median wait for the next "
                 f"request {s['swap_next_request_p50_ms']:.0f} ms + its TTFT {s['swap_its_ttft_p50_ms']:.0f} ms. "
                 f"Stored answers: {r['stored_answers']}.")
    return "\n".join(lines)


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def run_benchmark(cfg: SwapBenchConfig) -> dict:
    from common.models import prepare_default_model

    report = {"machine": machine_info("vllm"), "config": dataclasses.asdict(cfg),
              "engine": dataclasses.asdict(EngineConfig(kv_cache_gib=cfg.kv_cache_gib)), "load_before": load_average()}
    model_path = str(prepare_default_model(cfg.data_dir))  # no-op when already there
    with tempfile.TemporaryDirectory(prefix="bench-swap-") as tmp:
        report["result"] = asyncio.run(run_load(cfg, model_path=model_path, tmp=Path(tmp)))
    gc.collect()  # stopped engines' AsyncLLM objects go now, not in __del__ at interpreter exit
    report["load_after"] = load_average()
    report["summary"] = summarize(report["result"])
    return report


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(argv)
    # A plain `kill` should still stop the engine core: SIGTERM becomes Ctrl-C, which asyncio.run
    # turns into cancelling the run, so the engine's context managers run. (An exception raised in
    # the handler can land in a callback whose errors are only printed, and the run goes on.)
    signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    report = run_benchmark(cfg)
    report["markdown"] = markdown_table(report)
    write_results(report, cfg.out, indent=2)
    print(report["markdown"])
    print(f"\nJSON: {cfg.out}", file=sys.stderr)


if __name__ == "__main__":  # vLLM spawns its engine core; the spawned child must not re-run main
    main()
