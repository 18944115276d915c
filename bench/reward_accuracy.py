"""Held-out accuracy per second of training of the reward model, for choosing RewardConfig's defaults.

    python bench/reward_accuracy.py grid    [--configs 64x8,128x8,128x12] [--out ...]
    python bench/reward_accuracy.py rule    [--rule sure|list] [--configs 128x8] [--out ...]
    python bench/reward_accuracy.py default [--out ...]

grid     trains on 80 % of the HH-harmless *train* pairs and measures on the other 20 % (whole prompts
         on one side), for each max_length x num_layers in --configs: the eval split is never used.
rule     the same pairs with a visible rule put into them: one answer of each pair is rewritten to
         satisfy it (`sure`: starts with "Sure! "; `list`: its sentences become "- " bullet lines) and
         is the chosen one; the other answer is left as it was. Held-out accuracy on whole prompts.
default  what a default round does with the imported train pairs (RewardConfig() as it is: the newest
         max_pairs, eval_fraction held out), then the accuracy on hh-harmless-eval, as
         `python -m align evaluate-rm --pairs hh-harmless-eval.jsonl.gz` prints it.

Each run appends its rows (with `uptime` before and after) to the JSON file --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import machine_info, uptime, utc_now, write_results  # noqa: E402
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `python -m align` sets it for a round
DATA = REPO.parent / "shared" / "data"
MODEL = REPO / "data" / "models" / "SmolLM2-135M-Instruct"


def parse_configs(text: str) -> list[tuple[int, int]]:
    return [tuple(int(x) for x in item.split("x")) for item in text.split(",")]  # type: ignore[misc]


def with_rule(rows: list[dict], rule: str, seed: int) -> list[dict]:
    """Each pair's two answers, one rewritten to satisfy the rule and chosen; which one is drawn at random."""
    rng = random.Random(seed)
    out = []
    for row in rows:
        a, b = row["chosen"][0]["content"], row["rejected"][0]["content"]
        if rng.random() < 0.5:
            a, b = b, a
        out.append({**row, "chosen": [{"role": "assistant", "content": satisfy(a, rule)}],
                    "rejected": [{"role": "assistant", "content": unsatisfy(b, rule)}]})
    return out


def satisfy(text: str, rule: str) -> str:
    if rule == "sure":
        return "Sure! " + unsatisfy(text, rule)
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]
    return "\n".join("- " + s for s in sentences)


def unsatisfy(text: str, rule: str) -> str:
    if rule == "sure":
        return re.sub(r"^\s*sure[,.!]?\s*", "", text, flags=re.IGNORECASE)
    return re.sub(r"^\s*[-*] ", "", text, flags=re.MULTILINE)


def train_and_measure(train, held_out, cfg, *, label: str) -> dict:
    from align.reward import train_reward_model

    before = uptime()
    with tempfile.TemporaryDirectory(prefix="bench-rm-") as tmp:
        metrics = train_reward_model(base_model_path=str(MODEL), train_rows=train, eval_rows=held_out, cfg=cfg,
                                     out_dir=Path(tmp) / "rm")
    row = {"label": label, "max_length": cfg.max_length, "num_layers": cfg.num_layers,
           "train_pairs": len(train), "held_out_pairs": len(held_out),
           "held_out_accuracy": round(metrics["held_out_accuracy"], 4),
           "train_seconds": metrics["train_seconds"],
           "accuracy_points_over_chance_per_minute": round(
               (metrics["held_out_accuracy"] - 0.5) * 100 / (metrics["train_seconds"] / 60), 2),
           "uptime_before": before, "uptime_after": uptime()}
    print(json.dumps(row), flush=True)
    return row


def tuning_split(seed: int):
    from align.data import load_pairs_file, split_by_group

    return split_by_group(load_pairs_file(DATA / "hh-harmless-train.jsonl.gz"), eval_fraction=0.2, seed=seed)


def run_grid(args) -> list[dict]:
    from align.config import RewardConfig

    train, held_out = tuning_split(args.seed)
    return [train_and_measure(train, held_out, RewardConfig(max_length=length, num_layers=layers),
                              label=f"hh tune split {length}x{layers}")
            for length, layers in parse_configs(args.configs)]


def run_rule(args) -> list[dict]:
    from align.config import RewardConfig

    train, held_out = tuning_split(args.seed)
    train, held_out = train[: args.rule_pairs], held_out[: args.rule_pairs // 4]
    train, held_out = with_rule(train, args.rule, args.seed), with_rule(held_out, args.rule, args.seed + 1)
    return [train_and_measure(train, held_out, RewardConfig(max_length=length, num_layers=layers),
                              label=f"rule {args.rule} {length}x{layers}")
            for length, layers in parse_configs(args.configs)]


def run_default(args) -> list[dict]:
    from align.config import RewardConfig
    from align.data import load_pairs_file, newest_groups, split_by_group
    from align.reward import RewardScorer, pairwise_accuracy

    cfg = RewardConfig()
    rows = newest_groups(load_pairs_file(DATA / "hh-harmless-train.jsonl.gz"), max_pairs=cfg.max_pairs)
    train, held_out = split_by_group(rows, eval_fraction=cfg.eval_fraction, seed=cfg.seed)
    with tempfile.TemporaryDirectory(prefix="bench-rm-") as tmp:
        before = uptime()
        from align.reward import train_reward_model

        metrics = train_reward_model(base_model_path=str(MODEL), train_rows=train, eval_rows=held_out, cfg=cfg,
                                     out_dir=Path(tmp) / "rm")
        eval_rows = load_pairs_file(DATA / "hh-harmless-eval.jsonl.gz")
        accuracy = pairwise_accuracy(RewardScorer.load(Path(tmp) / "rm"), eval_rows)
    row = {"label": "default RewardConfig on hh-harmless-train, accuracy on hh-harmless-eval",
           "config": dataclasses.asdict(cfg), "train_pairs": len(train), "held_out_pairs": len(held_out),
           "held_out_accuracy": round(metrics["held_out_accuracy"], 4), "eval_pairs": len(eval_rows),
           "hh_harmless_eval_accuracy": round(accuracy, 4), "train_seconds": metrics["train_seconds"],
           "uptime_before": before, "uptime_after": uptime()}
    print(json.dumps(row), flush=True)
    return [row]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["grid", "rule", "default"])
    parser.add_argument("--configs", default="64x8,128x8,128x12", help="max_length x num_layers, comma-separated")
    parser.add_argument("--rule", choices=["sure", "list"], default="sure")
    parser.add_argument("--rule-pairs", type=int, default=400, help="training pairs for `rule` (a quarter held out)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "reward_accuracy.json"))
    args = parser.parse_args()

    rows = {"grid": run_grid, "rule": run_rule, "default": run_default}[args.mode](args)
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {"runs": []}
    result["runs"].append({"mode": args.mode, "when": utc_now(), "machine": machine_info("torch"), "rows": rows})
    write_results(result, out, indent=2)


if __name__ == "__main__":
    main()
