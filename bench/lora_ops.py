"""vLLM's CPU LoRA ops against ours (serving/cpu_lora_ops.py), side by side: decode throughput of the
default model with no adapter, on a rank-16 adapter on all seven linear layers (what a round trains),
and a batch mixing both, at 1 and 16 concurrent sequences.

    python bench/lora_ops.py                 # 2 alternating runs per side, ~8 minutes on 2 cores
    python bench/lora_ops.py --runs 1 --tokens 16   # smoke run
    git worktree add --detach /tmp/before HEAD~1 && python bench/lora_ops.py --before /tmp/before
                                             # a third side: our ops as an earlier revision had them

Each run is a fresh subprocess with vLLM's offline `LLM` and the app's engine settings (LoRA on,
max rank 64, 2 adapter slots, threads on every core as EngineConfig.cpu_cores='all'); the only
difference between the sides is `--worker-extension-cls serving.vllm_worker.CpuLoRAOps` (and, for
the side `before`, which checkout that module is imported from).
Greedy decoding with ignore_eos, so every request decodes exactly --tokens tokens.
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
sys.path.insert(0, str(REPO))  # `python bench/lora_ops.py` must import the project, not bench/

from bench.checkouts import add_side_args, revision, run_child, run_side  # noqa: E402
from bench.common import machine_info, markdown_table, write_results  # noqa: E402

PHASES = [("base", 1), ("adapter", 1), ("base", 16), ("adapter", 16), ("mixed", 16)]


def make_adapter(model_path: str, out_dir: Path, *, seed: int = 0) -> str:
    """A rank-16 LoRA on every linear layer with random (non-zero) B, as a trained adapter has."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from align.config import LLAMA_LINEAR_MODULES

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_path)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=LLAMA_LINEAR_MODULES,
                                             init_lora_weights=False))
    model.save_pretrained(out_dir)
    return str(out_dir)


def one_side(side: str, model_path: str, adapter: str, tokens: int, repeats: int) -> dict:
    """Runs in its own process: one engine, every phase `repeats` times; tokens/s per phase (median)."""
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    from serving.engine import WORKER_EXTENSION

    extra = {"worker_extension_cls": WORKER_EXTENSION} if side in ("ours", "before") else {}
    llm = LLM(model=model_path, enable_lora=True, max_lora_rank=64, max_loras=2, max_model_len=2048,
              max_num_seqs=64, **extra)
    lora = LoRARequest("bench-adapter", 1, adapter)
    params = SamplingParams(max_tokens=tokens, ignore_eos=True, temperature=0)
    prompts = [f"Tell me story number {i} about the sea." for i in range(16)]
    llm.generate(prompts[:2], params, lora_request=lora, use_tqdm=False)  # warm-up, adapter loaded
    result = {}
    for kind, n in PHASES:
        requests = {"base": None, "adapter": lora, "mixed": [lora if i % 2 else None for i in range(n)]}[kind]
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            llm.generate(prompts[:n], params, lora_request=requests, use_tqdm=False)
            rates.append(n * tokens / (time.perf_counter() - start))
        result[f"{kind} x{n}"] = statistics.median(rates)
    return result


def summary_table(median: dict, phases: list[str], before_revision: str | None) -> str:
    """tok/s per side and phase, with ours against vLLM's (and against the earlier checkout, if run)."""
    sides = ["vllm"] + (["before"] if before_revision else []) + ["ours"]
    names = {"vllm": "vLLM's ops", "before": f"ours at {before_revision}", "ours": "ours"}
    against = {**({"before": "before"} if before_revision else {}), "vllm": "vLLM"}  # side -> its name in a ratio
    header = ["batch", *(f"{names[s]} (tok/s)" for s in sides), *(f"ours / {name}" for name in against.values())]
    rows = [[p, *(f"{median[s][p]:.1f}" for s in sides), *(f"{median['ours'][p] / median[s][p]:.2f}x" for s in against)]
            for p in phases]
    return markdown_table(header, rows, align="l" + "r" * (len(header) - 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_side_args(parser, out="bench/results/lora_ops.json")
    args = parser.parse_args()
    if run_child(args, lambda args, adapter: one_side(args.side, args.model, adapter, args.tokens, args.repeats)):
        return
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-lora-") as tmp:
        adapter = make_adapter(args.model, Path(tmp) / "adapter")
        sides = ("vllm", "before", "ours") if args.before else ("vllm", "ours")
        runs = {side: [] for side in sides}
        for _ in range(args.runs):
            for side in sides:
                runs[side].append(run_side(__file__, side, args, adapter, Path(tmp) / f"{side}.json"))
                print(f"[{side}] {runs[side][-1]}", file=sys.stderr, flush=True)
    phases = [f"{kind} x{n}" for kind, n in PHASES]
    median = {side: {p: statistics.median(r[p] for r in rs) for p in phases} for side, rs in runs.items()}
    report = {"machine": machine_info("vllm"), "load_before": load_before, "load_after": os.getloadavg(), "config": vars(args), "runs": runs,
              "median_tok_s": median}
    if args.before:
        report["before_revision"] = revision(args.before)
    report["markdown"] = summary_table(median, phases, report.get("before_revision"))
    write_results(report, args.out, indent=2)
    print(report["markdown"])
    print(f"load average before {load_before}, after {report['load_after']}; JSON: {args.out}", file=sys.stderr)


if __name__ == "__main__":  # vLLM spawns its engine core; the spawned child must not re-run main
    main()
