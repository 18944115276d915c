"""Decode steps while a promotion is in transition: the new version's first requests run as a LoRA
beside the old version's answers, which finish on the merged weights (serving/merged_lora.py).
Decode step time with one such LoRA request among 15 merged ones, against all 16 merged and all 16
on the LoRA; and what a new request's prompt adds to the steps that prefill it beside 15 merged
answers, as a LoRA (what the first request after a promotion meets) and merged. For this checkout
and (optionally) an earlier one, side by side.

    python bench/transition_step.py                               # this checkout, ~3 minutes
    git worktree add --detach /tmp/before HEAD~1 && python bench/transition_step.py --before /tmp/before

Each run is a fresh subprocess with vLLM's offline `LLM`, the app's engine settings (LoRA on, max
rank 64, threads on every core) and merging on, as the app's engine runs it: adapter `a` (rank 16
on all seven linear layers, random B: what a round trains) merged into the weights, adapter `b`
(another seed) loaded beside it, so `b` runs as a LoRA relative to `a` (rank 32), as a newly
promoted version does while the old one drains. Greedy, ignore_eos: every request decodes exactly
--tokens tokens; ms per step = the generate call's wall time / --tokens (the prompt's prefill is in
it, the same on every phase). The prefill phases drive the engine step by step (LLMEngine.step):
15 answers on `a` decoding, then a short chat prompt added on `a`, on `b`, or none; the two steps
after it are timed (vLLM's engine core runs ahead of the client by a step, so the prefill lands in
one of them), 12 times each, interleaved.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `python bench/transition_step.py` must import the project, not bench/

from bench.checkouts import add_side_args, revision, run_child, run_side  # noqa: E402
from bench.common import machine_info, markdown_table, write_results  # noqa: E402
from bench.lora_ops import make_adapter  # noqa: E402

PHASES = {  # phase -> adapters of its 16 or 17 requests ("a": merged, "b": a LoRA relative to it)
    "16 merged": "a" * 16,
    "15 merged + 1 LoRA": "a" * 15 + "b",
    "16 merged + 1 LoRA": "a" * 16 + "b",
    "16 LoRA": "b" * 16,
}
PREFILL = {"no new request": None, "a new request, merged": "a", "a new request, as a LoRA": "b"}
PROBE_PROMPT = "<|im_start|>user\nWhat does HTTP stand for and who made it?<|im_end|>\n<|im_start|>assistant\n"


def prefill_steps(llm, lora: dict, repeats: int = 12) -> dict:
    """Median ms of the two steps after a new request arrives beside 15 merged answers, per PREFILL."""
    from vllm import SamplingParams

    engine = llm.llm_engine
    # Outlasts the ~5 + 12 * 3 * 5 steps below, and fits max_model_len (2048) with its prompt.
    long = SamplingParams(max_tokens=1000, ignore_eos=True, temperature=0)
    short = SamplingParams(max_tokens=3, ignore_eos=True, temperature=0)
    for i in range(15):
        engine.add_request(f"answer-{i}", f"Tell me story number {i} about the sea.", long, lora_request=lora["a"])

    def step() -> float:
        start = time.perf_counter()
        engine.step()
        return (time.perf_counter() - start) * 1000

    for _ in range(5):
        step()
    times = {phase: [] for phase in PREFILL}
    for i in range(repeats):
        for phase, name in PREFILL.items():
            for _ in range(3):
                step()  # decode only: the last new request has finished
            if name is not None:
                engine.add_request(f"new-{i}-{name}", PROBE_PROMPT, short, lora_request=lora[name])
            times[phase].append(step() + step())
    for i in range(15):
        engine.abort_request([f"answer-{i}"])
    return {f"two steps: {phase}": statistics.median(t) for phase, t in times.items()}


def one_side(model_path: str, adapters: dict, tokens: int, repeats: int) -> dict:
    """Runs in its own process: one engine, `a` merged, every phase `repeats` times; ms/step medians."""
    from serving.engine import WORKER_EXTENSION
    from serving.merged_lora import MERGE_ENV

    os.environ[MERGE_ENV] = "1"  # read by the worker, as the app's engine sets it
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    llm = LLM(model=model_path, enable_lora=True, max_lora_rank=64, max_loras=3, max_model_len=2048,
              max_num_seqs=64, worker_extension_cls=WORKER_EXTENSION)
    lora = {"a": LoRARequest("a", 1, adapters["a"]), "b": LoRARequest("b", 2, adapters["b"])}
    params = SamplingParams(max_tokens=tokens, ignore_eos=True, temperature=0)
    prompts = [f"Tell me story number {i} about the sea." for i in range(17)]
    for name in "ab":  # warm-up, both adapters loaded
        llm.generate(prompts[:2], params, lora_request=lora[name], use_tqdm=False)
    reasons = llm.collective_rpc("merge_adapter", args=(1,))
    if any(reasons):
        raise RuntimeError(f"The worker did not merge adapter a: {reasons}")
    times = {phase: [] for phase in PHASES}
    for _ in range(repeats):
        for phase, names in PHASES.items():
            start = time.perf_counter()
            llm.generate(prompts[:len(names)], params, lora_request=[lora[n] for n in names], use_tqdm=False)
            times[phase].append((time.perf_counter() - start) / tokens * 1000)
    return {**{phase: statistics.median(t) for phase, t in times.items()}, **prefill_steps(llm, lora)}


def summary_table(median: dict, before_revision: str | None) -> str:
    sides = (["before"] if before_revision else []) + ["ours"]
    names = {"before": f"at {before_revision}", "ours": "this checkout"}
    header = ["batch", *(f"{names[s]} (ms/step)" for s in sides), *(["this / before"] if before_revision else [])]
    phases = list(PHASES) + [f"two steps: {p}" for p in PREFILL]
    rows = [[p, *(f"{median[s][p]:.1f}" for s in sides),
             *([f"{median['ours'][p] / median['before'][p]:.2f}x"] if before_revision else [])] for p in phases]
    return markdown_table(header, rows, align="l" + "r" * (len(header) - 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_side_args(parser, out="bench/results/transition_step.json")
    args = parser.parse_args()
    if run_child(args, lambda args, adapters: one_side(args.model, adapters, args.tokens, args.repeats)):
        return
    if not Path(args.model).is_dir():
        sys.exit(f"No model at {args.model}: run `make model` first, or pass --model.")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-transition-") as tmp:
        adapters = {name: make_adapter(args.model, Path(tmp) / name, seed=seed) for name, seed in (("a", 0), ("b", 1))}
        sides = ("before", "ours") if args.before else ("ours",)
        runs = {side: [] for side in sides}
        for _ in range(args.runs):
            for side in sides:
                runs[side].append(run_side(__file__, side, args, adapters, Path(tmp) / f"{side}.json"))
                print(f"[{side}] {runs[side][-1]}", file=sys.stderr, flush=True)
    median = {side: {p: statistics.median(r[p] for r in rs) for p in rs[0]} for side, rs in runs.items()}
    report = {"machine": machine_info("vllm"), "load_before": load_before, "load_after": os.getloadavg(),
              "config": vars(args), "runs": runs, "median_ms_per_step": median}
    if args.before:
        report["before_revision"] = revision(args.before)
    report["markdown"] = summary_table(median, report.get("before_revision"))
    write_results(report, args.out, indent=2)
    print(report["markdown"])
    print(f"load average before {load_before}, after {report['load_after']}; JSON: {args.out}", file=sys.stderr)


if __name__ == "__main__":  # vLLM spawns its engine core; the spawned child must not re-run main
    main()
