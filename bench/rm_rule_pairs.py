"""Reward-model settings on the pairs an efficacy run's users gave (bench/efficacy.py): held-out accuracy,
and accuracy on the held-out pairs whose answers differ in the users' rule, per RewardConfig variant.

    python bench/rm_rule_pairs.py --data-dir /tmp/efficacy/number-rankings+thumbs/data --rule number \\
        --variant '{}' --variant '{"max_length": 256}' [--out bench/results/rm_rule_pairs.json]

The pairs are exported from the data dir's chat.db as a round exports them, grouped by prompt and split
as a round splits them (eval_fraction 0.1, seed 0), so "held out" is the same split a round measures.
Each variant's row (config overrides, accuracies, seconds, optimizer steps, train loss, load) is appended
to --out. Run it on a quiet machine: the seconds are wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)  # bench/serving.py would shadow the serving package
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `python -m align` sets it for a round

from bench.common import machine_info, uptime, write_results  # noqa: E402
from bench.efficacy_rules import RULES  # noqa: E402

MODEL = REPO / "data" / "models" / "SmolLM2-135M-Instruct"


def rule_split(data_dir: str, rule_name: str):
    """(train, held_out, held-out pairs that differ in the rule) from the data dir's feedback."""
    from align.data import split_by_group
    from storage import FeedbackStore, export

    rule = RULES[rule_name]
    with FeedbackStore.open(data_dir) as store:
        pairs = export.preference_pairs(store)
    by_prompt = [{**row, "group": json.dumps(row["prompt"], sort_keys=True)} for row in pairs]  # whole prompts per side
    train, held_out = split_by_group(by_prompt, eval_fraction=0.1, seed=0)
    differ = [r for r in held_out if rule.check(r["chosen"][0]["content"]) != rule.check(r["rejected"][0]["content"])]
    return train, held_out, differ


def run_variant(overrides: dict, train, held_out, differ) -> dict:
    from align.config import RewardConfig
    from align.reward import RewardScorer, pairwise_accuracy, train_reward_model

    cfg = RewardConfig(**overrides)
    load_before = uptime()
    with tempfile.TemporaryDirectory(prefix="rm-rule-") as out:
        started = time.monotonic()
        metrics = train_reward_model(base_model_path=MODEL, train_rows=train, eval_rows=held_out, cfg=cfg, out_dir=out)
        seconds = time.monotonic() - started
        rule_accuracy = pairwise_accuracy(RewardScorer.load(out), differ) if differ else None
    return {"overrides": overrides, "held_out_accuracy": metrics["held_out_accuracy"], "held_out_pairs": len(held_out),
            "rule_pair_accuracy": rule_accuracy, "rule_pairs": len(differ), "seconds": round(seconds, 1),
            "optimizer_steps": metrics["optimizer_steps"], "train_loss": metrics["train_loss"],
            "train_pairs": len(train), "load_before": load_before, "load_after": uptime()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="An efficacy run's data dir (its chat.db holds the feedback).")
    parser.add_argument("--rule", required=True, choices=sorted(RULES), help="The rule those users ranked by.")
    parser.add_argument("--variant", action="append", default=[],
                        help="RewardConfig overrides as JSON ('{}' = the defaults); repeat for several.")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "rm_rule_pairs.json"))
    args = parser.parse_args(argv)
    train, held_out, differ = rule_split(args.data_dir, args.rule)
    print(f"{len(train)} train pairs, {len(held_out)} held out, {len(differ)} of them differ in the rule", flush=True)
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.exists() else {"runs": []}
    for variant in args.variant or ["{}"]:
        row = {"rule": args.rule, "data_dir": args.data_dir, "machine": machine_info("torch", "transformers", "trl"),
               **run_variant(json.loads(variant), train, held_out, differ)}
        print(json.dumps(row), flush=True)
        report["runs"].append(row)
        write_results(report, out)


if __name__ == "__main__":
    main()
