"""Wall time of each stage of a default alignment round, and PPO throughput, on this machine.

    python bench/align.py [--pairs FILE] [--demonstrations N] [--out bench/results/align.json]

A fresh data dir gets the HH-harmless train pairs (as rankings of two) plus N rewrites, so the
round runs all three stages (SFT -> RM -> PPO) and the evaluation with their DEFAULT configs.
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
sys.path.insert(0, str(REPO))  # `python bench/align.py` must import the project, not bench/
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads, as `python -m align` sets it for a round

from bench.common import HH_TRAIN, machine_info, machine_line, markdown_table, write_results  # noqa: E402


def prepare_data_dir(data_dir: Path, pairs: Path, demonstrations: int):
    from common.models import prepare_default_model, prepared_model_dir
    from storage.importer import import_pairs
    from storage.store import FeedbackStore

    model = prepare_default_model(REPO / "data")
    (data_dir / "models").mkdir(parents=True)
    prepared_model_dir(data_dir).symlink_to(model)
    store = FeedbackStore.open(data_dir)
    import_pairs(store, pairs)
    for ranking in store.rankings()[:demonstrations]:
        # The imported "chosen" answer, rewritten as a demonstration over the rejected one.
        chosen = store.message(ranking.response_ids[0])
        if chosen.content.strip():
            store.record_demonstration(response_id=ranking.response_ids[1], user="import", content=chosen.content)
    return store, str(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", default=str(HH_TRAIN))
    parser.add_argument("--demonstrations", type=int, default=32, help="Rewrites added so SFT runs.")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "align.json"))
    args = parser.parse_args()

    from align.config import RewardConfig, SFTConfig
    from align.ppo import PPOConfig
    from align.round import run_round
    from align.stage_configs import RoundConfig

    with tempfile.TemporaryDirectory(prefix="bench-align-") as tmp:
        data_dir = Path(tmp)
        store, model = prepare_data_dir(data_dir, Path(args.pairs), args.demonstrations)
        ppo = PPOConfig()
        load_before = os.getloadavg()
        started = time.perf_counter()
        version = run_round(store=store, data_dir=data_dir, cfg=RoundConfig(model=model), sft_cfg=SFTConfig(),
                            rm_cfg=RewardConfig(), ppo_cfg=ppo)
        total = time.perf_counter() - started
        metrics = json.loads((Path(store.registry.adapter(version).path) / "metrics.json").read_text())
    timings = metrics["timings_s"]
    steps = metrics["ppo_steps"]
    answer_tokens = sum(s["answer_length"] * ppo.batch_size for s in steps)
    result = {
        "machine": machine_info(),
        "load_average_before_after": [load_before, os.getloadavg()],
        "data": metrics["data"],
        "timings_s": {**timings, "total": total},
        "rm_held_out_accuracy": metrics["reward_model"].get("held_out_accuracy"),
        "ppo_episodes": len(steps) * ppo.batch_size,
        "ppo_episodes_per_s": len(steps) * ppo.batch_size / timings["ppo"],
        "ppo_answer_tokens_per_s": answer_tokens / timings["ppo"],
        # Each phase on its own: sampling (decode steps x batch), and PPO epochs over the samples.
        "rollout_decoded_tokens_per_s": sum(s["decoded_tokens"] for s in steps) / sum(s["rollout_s"] for s in steps),
        "rollout_answer_tokens_per_s": answer_tokens / sum(s["rollout_s"] for s in steps),
        "update_samples_per_s": len(steps) * ppo.batch_size * ppo.epochs / sum(s["update_s"] for s in steps),
        "ppo_phase_s": {k: sum(s[k] for s in steps) for k in ("rollout_s", "score_s", "update_s")},
        "reward_first_last": [steps[0]["reward"], steps[-1]["reward"]],
        "kl_last": steps[-1]["kl"],
        "evaluation": {k: metrics["evaluation"][k]
                       for k in ("reward_gain", "reward_gain_interval", "reference_version")},
    }
    write_results(result, args.out)
    print(f"Machine: {machine_line(result['machine'])}; data: {result['data']}")
    print(markdown_table(["stage", "wall time (s)"],
                         [[stage, f"{seconds:.0f}"] for stage, seconds in result["timings_s"].items()], align="lr"))
    print(f"\nPPO: {result['ppo_episodes']} episodes, {result['ppo_episodes_per_s']:.3f} episodes/s; rollout "
          f"{result['rollout_decoded_tokens_per_s']:.1f} decoded tokens/s ({result['rollout_answer_tokens_per_s']:.1f} "
          f"answer tokens/s); update {result['update_samples_per_s']:.2f} samples/s (x PPO epochs); phases "
          f"{ {k: round(v) for k, v in result['ppo_phase_s'].items()} }; RM held-out accuracy "
          f"{result['rm_held_out_accuracy']}")


if __name__ == "__main__":
    main()
