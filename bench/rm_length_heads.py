"""The pooled reward model's head refitted with other length features on one efficacy run's pairs: held-out
accuracy, accuracy on the held-out pairs that differ in the users' rule, how the band's two edges fare, and the
mean score by answer length (issue 15: the length band's reward model preferred too-short answers).

    python bench/rm_length_heads.py --data-dir /tmp/efficacy/words_40_120-rankings+thumbs-lr-2e-4/data \\
        --rule words_40_120 [--out bench/results/rm_length_heads.json]

Every pair's answers are read once by the default RewardConfig's blocks (PooledFeatures); then the round's own
fit (align.pooled_reward.fit_head) runs per variant: --rm-length-terms 2 or 7, the length weights under the
head's L2 penalty (--rm-head-length-weight-decay 1.0) or free of it (0). The split is a round's
(bench/rm_rule_pairs.rule_split). Rule pairs are also counted by the two answers' word classes (< 40 words,
40-120, > 120): "band vs short" and "band vs long" are the band's lower and upper edge.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)  # bench/serving.py would shadow the serving package
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `python -m align` sets it for a round

from bench.common import machine_info, uptime, write_results  # noqa: E402
from bench.efficacy_rules import RULES, words  # noqa: E402
from bench.rm_rule_pairs import MODEL, rule_split  # noqa: E402

VARIANTS = ((2, 1.0), (2, 0.0), (7, 1.0), (7, 0.0))  # (length_terms, head_length_weight_decay); (2, 1.0): defaults
TOKEN_BUCKETS = ((0, 30), (30, 53), (53, 100), (100, 160), (160, 10_000))  # 53-160 tokens ~ 40-120 words


def word_class(text: str) -> str:
    n = len(words(text))
    return "short" if n < 40 else ("band" if n <= 120 else "long")


def read_states(rows):
    """[N, 4H + 1] features (states and the log length) of each pair's chosen and rejected answer."""
    import torch

    from align.config import RewardConfig
    from align.packed import packed_frozen_linears
    from align.pooled_reward import PooledFeatures, load_backbone, pair_features
    from align.reward import load_tokenizer

    cfg = RewardConfig()
    features = PooledFeatures(load_backbone(MODEL, num_layers=cfg.num_layers), load_tokenizer(MODEL),
                              max_length=cfg.max_length, length_terms=1)
    with packed_frozen_linears(features.backbone), torch.inference_mode():
        return pair_features(features, rows)


def with_length_terms(states, terms: int):
    """The states' features with the log length (their last column) replaced by length_features(terms)."""
    import torch

    from align.pooled_reward import length_features

    tokens = torch.expm1(states[:, -1]).round()
    return torch.cat([states[:, :-1], length_features(tokens, terms)], dim=1)


def band_edge(row) -> str | None:
    """'band vs short' or 'band vs long' for a pair of an in-band answer and one outside the band, else None."""
    classes = {word_class(row[side][0]["content"]) for side in ("chosen", "rejected")}
    return f"band vs {(classes - {'band'}).pop()}" if len(classes) == 2 and "band" in classes else None


def fit_variant(train, held, differ: list[int], edge_of: dict[int, str], terms: int, length_decay: float) -> dict:
    """Fit the head on the train features with these length features; measure it on the held-out pairs (differ:
    the indices of those that differ in the rule; edge_of: the band edge of each such pair that has one)."""
    import torch

    from align.config import RewardConfig
    from align.pooled_reward import fit_head

    cfg = RewardConfig(length_terms=terms, head_length_weight_decay=length_decay)
    started = time.monotonic()
    head, loss = fit_head(with_length_terms(train[0], terms), with_length_terms(train[1], terms), cfg)
    chosen, rejected = (head(with_length_terms(side, terms)) for side in held)
    right = (chosen > rejected).tolist()
    edges: dict[str, list[int]] = {}
    for i, edge in edge_of.items():
        counts = edges.setdefault(edge, [0, 0])
        counts[0] += right[i]
        counts[1] += 1
    scores = torch.cat([chosen, rejected])
    tokens = torch.expm1(torch.cat([held[0][:, -1], held[1][:, -1]]))
    by_length = {}
    for low, high in TOKEN_BUCKETS:
        inside = (tokens >= low) & (tokens < high)
        by_length[f"{low}-{high} tokens"] = {"answers": int(inside.sum()),
                                             "mean_score": round(float(scores[inside].mean()), 3) if inside.any() else None}
    return {"length_terms": terms, "head_length_weight_decay": length_decay,
            "held_out_accuracy": round(sum(right) / len(right), 4), "held_out_pairs": len(right),
            "rule_pair_accuracy": round(sum(right[i] for i in differ) / len(differ), 4) if differ else None,
            "rule_pairs": len(differ), "edges_right_of_pairs": edges, "mean_score_by_length": by_length,
            "train_loss": round(loss, 4), "fit_seconds": round(time.monotonic() - started, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="An efficacy run's data dir (its chat.db holds the feedback).")
    parser.add_argument("--rule", required=True, choices=sorted(RULES), help="The rule those users ranked by.")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "rm_length_heads.json"))
    args = parser.parse_args(argv)
    train_rows, held_rows, _ = rule_split(args.data_dir, args.rule)
    load_before = uptime()
    started = time.monotonic()
    train, held = read_states(train_rows), read_states(held_rows)
    read_seconds = round(time.monotonic() - started, 1)
    print(f"{len(train_rows)} train pairs, {len(held_rows)} held out; answers read in {read_seconds} s", flush=True)
    rule = RULES[args.rule]
    differ = [i for i, r in enumerate(held_rows)
              if rule.check(r["chosen"][0]["content"]) != rule.check(r["rejected"][0]["content"])]
    edge_of = {i: edge for i in differ if (edge := band_edge(held_rows[i])) is not None}
    rows = [fit_variant(train, held, differ, edge_of, terms, decay) for terms, decay in VARIANTS]
    for row in rows:
        print(json.dumps(row), flush=True)
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.exists() else {"runs": []}
    report["runs"].append({"rule": args.rule, "data_dir": args.data_dir, "train_pairs": len(train_rows),
                           "held_out_pairs": len(held_rows), "read_seconds": read_seconds, "variants": rows,
                           "load_before": load_before, "load_after": uptime(),
                           "machine": machine_info("torch", "transformers")})
    write_results(report, out)


if __name__ == "__main__":
    main()
