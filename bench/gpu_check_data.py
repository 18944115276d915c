"""The inputs of bench/gpu_check.sh's whole round: a tiny random Llama with SmolLM2's tokenizer, and a
small feedback DB with rankings, thumbs and rewrites that meets the round's default thresholds.

    python bench/gpu_check_data.py model OUT_DIR --tokenizer DIR     # once, where SmolLM2 is prepared
    python bench/gpu_check_data.py sample OUT.jsonl.gz --pairs HH.jsonl.gz [--n 64]
    python bench/gpu_check_data.py db DATA_DIR --pairs SAMPLE.jsonl.gz
    python bench/gpu_check_data.py verify DATA_DIR --device cuda [--copy-metrics FILE]   # after `align run`

The model and the DB come from bench/tiny.py (save_tiny_base, store_with_pairs), the helpers the
alignment tests use too, so the check trains what the tests train. `db` checks
the exported feedback against the default RoundConfig, SFTConfig and RewardConfig thresholds, so the
round runs SFT, the reward model and PPO without any threshold lowered.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Run by path, python puts bench/ first on sys.path, where bench/align.py would hide the align package.
sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() not in (REPO, Path(__file__).resolve().parent)]

THUMBED_RANKINGS = 8  # rankings whose two answers also get a thumbs up / down


def make_model(out_dir: str, tokenizer_dir: str) -> None:
    from bench.tiny import save_tiny_base

    path = save_tiny_base(out_dir, tokenizer_dir)
    print(f"tiny model with {tokenizer_dir}'s tokenizer saved in {path}")


def make_sample(out: str, pairs: str, n: int) -> None:
    with gzip.open(pairs, "rt") as src, gzip.open(out, "wt") as dst:
        dst.writelines(itertools.islice(src, n))
    print(f"first {n} pairs of {pairs} in {out}")


def make_db(data_dir: str, sample: str) -> None:
    from align.config import RewardConfig, SFTConfig
    from align.round import RoundError, read_feedback, round_data
    from align.stage_configs import RoundConfig
    from bench.tiny import store_with_pairs

    sft, rm, rnd = SFTConfig(), RewardConfig(), RoundConfig()
    # The sample, not ../shared/data's whole file: that does not travel to the GPU machine.
    with store_with_pairs(Path(data_dir), sum(1 for _ in gzip.open(sample, "rt")), pairs=Path(sample)) as store:
        rankings = store.rankings()
        for ranking in rankings[2:sft.min_demonstrations]:  # store_with_pairs rewrote the first two
            store.record_demonstration(response_id=ranking.response_ids[1], user="import",
                                       content=f"A short, careful answer (rewrite {ranking.id}).")
        for ranking in rankings[-THUMBED_RANKINGS:]:
            better, worse = ranking.response_ids[:2]
            store.record_vote(response_id=better, user="import", rating=1)
            store.record_vote(response_id=worse, user="import", rating=-1, reason="unhelpful")
        feedback = read_feedback(store)
    kinds = {k: sum(p["source"] == k for p in feedback["pairs"]) for k in ("ranking", "thumbs", "demonstration")}
    try:
        data = round_data(feedback, rnd, max_pairs=rm.max_pairs)
    except RoundError as e:
        sys.exit(f"db: {e}")
    rm_train = int(len(data.pairs) * (1 - rm.eval_fraction))  # about what the round's split keeps
    problems = [f"{len(data.demonstrations)} demonstrations < sft min {sft.min_demonstrations}"] \
        if len(data.demonstrations) < sft.min_demonstrations else []
    problems += [f"~{rm_train} RM training pairs < rm min {rm.min_pairs}"] if rm_train < rm.min_pairs else []
    if problems:
        sys.exit("db: " + "; ".join(problems))
    print(f"db in {data_dir}: {data.counts()} {kinds} (defaults: round min_pairs {rnd.min_pairs}, min_prompts "
          f"{rnd.min_prompts} + eval_prompts {rnd.eval_prompts}; sft min_demonstrations {sft.min_demonstrations}; "
          f"rm min_pairs {rm.min_pairs})")


def verify(data_dir: str, device: str, copy_metrics: str | None) -> None:
    """Exit 1 unless the DB holds one succeeded round whose candidate trained every stage on `device`."""
    import json
    import shutil

    from storage.store import FeedbackStore

    with FeedbackStore.open(data_dir) as store:
        rounds = [(r.status, r.adapter_version, r.error) for r in store.round_lock.rounds()]
        adapters = [(a.version, a.status, a.path) for a in store.registry.adapters()]
    problems = [] if [r[:2] for r in rounds] == [("succeeded", 1)] else [f"rounds {rounds}"]
    problems += [] if [a[:2] for a in adapters] == [(1, "candidate")] else [f"adapters {adapters}"]
    metrics = {}
    if adapters:
        path = Path(adapters[0][2])
        if (path / "metrics.json").is_file():
            metrics = json.loads((path / "metrics.json").read_text())
            if copy_metrics:
                shutil.copy(path / "metrics.json", copy_metrics)
        missing = [n for n in ("sft", "reward_model", "adapter_model.safetensors", "value_head.pt", "metrics.json")
                   if not (path / n).exists()]
        problems += [f"missing in {path}: {missing}"] if missing else []
    training = metrics.get("training", {})
    problems += [] if training.get("device") == device else [f"training {training}, expected device {device!r}"]
    problems += [] if metrics.get("ppo_steps") else ["no PPO steps in metrics.json"]
    finite = metrics.get("evaluation", {}).get("candidate", {}).get("finite")
    problems += [] if finite else [f"candidate evaluation finite={finite}"]
    print(f"round: {rounds}; adapters: {[a[:2] for a in adapters]}; training {training}; "
          f"timings_s {metrics.get('timings_s')}; RM {dict((k, metrics.get('reward_model', {}).get(k)) for k in ('train_pairs', 'held_out_accuracy', 'processes'))}; "
          f"PPO steps {len(metrics.get('ppo_steps', []))}; candidate reward "
          f"{metrics.get('evaluation', {}).get('candidate', {}).get('mean_reward')}")
    for problem in problems:
        print(f"FAIL  {problem}")
    if problems:
        sys.exit(1)
    print("PASS  one succeeded round, one candidate, SFT + RM + PPO + evaluation on " + device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    model = sub.add_parser("model")
    model.add_argument("out_dir")
    model.add_argument("--tokenizer", required=True, help="Directory with SmolLM2's tokenizer files.")
    sample = sub.add_parser("sample")
    sample.add_argument("out")
    sample.add_argument("--pairs", required=True)
    sample.add_argument("--n", type=int, default=64)
    db = sub.add_parser("db")
    db.add_argument("data_dir")
    db.add_argument("--pairs", required=True, help="A gzipped prompt/chosen/rejected JSONL sample.")
    check = sub.add_parser("verify")
    check.add_argument("data_dir")
    check.add_argument("--device", required=True, help="The device metrics.json must name (cuda or cpu).")
    check.add_argument("--copy-metrics", default=None, help="Copy the candidate's metrics.json here.")
    args = parser.parse_args()
    if args.command == "verify":
        verify(args.data_dir, args.device, args.copy_metrics)
    elif args.command == "model":
        make_model(args.out_dir, args.tokenizer)
    elif args.command == "sample":
        make_sample(args.out, args.pairs, args.n)
    else:
        make_db(args.data_dir, args.pairs)


if __name__ == "__main__":
    main()
