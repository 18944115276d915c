"""Why the CPU LoRA ops compute in float32 (serving/cpu_lora_ops.py): one LoRA matmul as the engine
meets it, bfloat16 against float32, when every call has the same number of tokens and when the
number varies from call to call, as the runs of a LoRA do in a serving batch (each new prompt
length, each new mix of versions in a step).

    python bench/lora_matmul_shapes.py        # ~1 minute

A bfloat16 matmul goes through oneDNN, which builds a kernel for every new shape it meets (and
keeps a bounded number of them); a float32 one goes to MKL, which needs no per-shape setup. Each
pass times every call of a shuffled sequence of token counts; the second pass of the same shapes
shows what is left once every kernel exists.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import machine_info, markdown_table, write_results  # noqa: E402


def time_calls(tokens: list[int], inputs: dict, matmul) -> float:
    """Mean microseconds per call over `tokens` (one call per entry)."""
    start = time.perf_counter()
    for n in tokens:
        matmul(inputs[n])
    return (time.perf_counter() - start) / len(tokens) * 1e6


def measure(rank: int, out: int, max_tokens: int, threads: int, seed: int) -> list[dict]:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    weight = torch.randn(out, rank, dtype=torch.bfloat16)  # an expand: [tokens, rank] @ [rank, out]
    weight_t32 = weight.float().T.contiguous()
    inputs = {n: torch.randn(n, rank, dtype=torch.bfloat16) for n in range(1, max_tokens + 1)}
    varied = list(range(1, max_tokens + 1))
    random.Random(seed).shuffle(varied)
    fixed = [max_tokens // 16] * max_tokens
    sides = {"bfloat16": lambda x: x @ weight.T, "float32": lambda x: x.float() @ weight_t32}
    rows = []
    for name, tokens in (("same token count every call", fixed), ("a new token count every call", varied)):
        for side, matmul in sides.items():
            first = time_calls(tokens, inputs, matmul)
            second = time_calls(tokens, inputs, matmul)
            rows.append({"calls": name, "dtype": side, "first_pass_us": first, "second_pass_us": second})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rank", type=int, default=32, help="Rank of the LoRA (32: two rank-16 adapters, one "
                                                             "relative to the other).")
    parser.add_argument("--out-features", type=int, default=1536, help="Output width (1536: gate/up of the default model).")
    parser.add_argument("--max-tokens", type=int, default=400, help="Token counts 1..N, each once per pass.")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the engine's cores).")
    parser.add_argument("--repeats", type=int, default=3, help="Repeats in this one process, each with a new seed: "
                                                                "the second passes' median is reported; the first "
                                                                "pass only from the first repeat, the one that meets "
                                                                "every shape new.")
    parser.add_argument("--out", default=str(REPO / "bench/results/lora_matmul_shapes.json"))
    args = parser.parse_args()
    # oneDNN keeps its kernels for the whole process: later repeats meet the same shapes already built,
    # so only the first repeat's first pass is what a fresh engine sees.
    runs = [measure(args.rank, args.out_features, args.max_tokens, args.threads, seed=i) for i in range(args.repeats)]
    rows = [{**row, "second_pass_us_median": statistics.median(r[j]["second_pass_us"] for r in runs)}
            for j, row in enumerate(runs[0])]
    report = {"machine": machine_info("torch"), "config": vars(args), "runs": runs, "rows": rows}
    report["markdown"] = markdown_table(
        ["calls", "dtype", "first pass (us/call, fresh process)", "shapes seen before (us/call, median)"],
        [[r["calls"], r["dtype"], f"{r['first_pass_us']:.1f}", f"{r['second_pass_us_median']:.1f}"] for r in rows],
        align="llrr")
    write_results(report, args.out, indent=2)
    print(report["markdown"])


if __name__ == "__main__":
    main()
