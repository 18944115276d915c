"""Command line: python -m align {run, train-rm, evaluate-rm} --data-dir D.

    run          one alignment round: (SFT) -> reward model -> PPO -> evaluation -> candidate adapter
    worker       the same round on this machine for an app elsewhere (--server URL --token T)
    train-rm     train a reward model on the preference pairs exported from D/chat.db
    evaluate-rm  score a prompt/chosen/rejected JSONL(.gz) file with a reward model

Where reward models live in a data dir D:

    D/reward_models/<UTC timestamp>/     one per `train-rm` run, e.g. D/reward_models/20250101T120000Z/
    D/adapters/<version>/reward_model/   one per alignment round, saved next to that round's policy adapter

A directory counts as a reward model once its reward_model.json exists (written last, see align.reward).
"The newest reward model" is the one whose reward_model.json was written most recently, in either place.

Both commands print key=value lines and end with `accuracy=<float>`. A refused command (no database,
no reward model, a bad pairs file, too few pairs) prints one sentence on stderr and exits with status 2.
"""

from __future__ import annotations

import os

# Before torch loads OpenMP: its idle threads then sleep instead of spinning. A round shares the cores with
# the serving engine (and whatever else runs), and spinning threads steal the time slices the working ones
# wait for: one PPO step beside other jobs took 260 s spinning and 68 s sleeping. A setting in the
# environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import math
import sys
from datetime import datetime, timezone
from pathlib import Path

from common.flags import add_dataclass_args, from_namespace
from common.models import DEFAULT_MODEL, ModelNotFound, resolve_model
from storage.adapters import ADAPTERS_DIR, REWARD_MODEL_DIR
from storage.config import db_path
from storage.errors import StoreError
from storage.export import preference_pairs
from storage.permissions import owner_only_umask
from storage.store import FeedbackStore

from .config import RewardConfig
from .data import NotEnoughData, check_enough, load_pairs_file, newest_groups, split_by_group
from .distributed import MainProcessFailed
from .round import RoundError, add_round_arguments, round_from_args
from .stage_configs import ConfigError
from .worker import WorkerError, add_worker_arguments, worker_from_args
from .reward import META_FILE, RewardModelNotFound, RewardScorer, cpu_threads, pairwise_accuracy, train_reward_model

EXIT_REFUSED = 2  # the same status argparse uses for a bad command line
TRAIN_RM_DIR = "reward_models"  # D/reward_models/<timestamp>/
ROUND_RM_GLOB = f"{ADAPTERS_DIR}/*/{REWARD_MODEL_DIR}"  # D/adapters/<version>/reward_model/


class CommandError(Exception):
    """A command that cannot run as asked; the message is one sentence for the user."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m align", description="Train and evaluate alignment models.")
    commands = parser.add_subparsers(dest="command", required=True)

    round_ = commands.add_parser("run", help="Run one alignment round and register a candidate adapter.")
    add_round_arguments(round_)

    worker = commands.add_parser("worker", help="Run one round here for a remote app: fetch its data over the "
                                                "API, train, upload the candidate for its gate.")
    add_worker_arguments(worker)

    train = commands.add_parser("train-rm", help="Train a reward model on the database's preference pairs.")
    add_common_arguments(train)
    add_dataclass_args(train, RewardConfig)

    evaluate = commands.add_parser("evaluate-rm", help="Print a reward model's pairwise accuracy on a pairs file.")
    add_common_arguments(evaluate)
    evaluate.add_argument("--pairs", required=True, help="prompt/chosen/rejected JSONL or JSONL.gz file to score.")
    evaluate.add_argument("--rm", default=None, help="Reward model directory (default: the newest in the data dir).")
    evaluate.add_argument(
        "--num-threads",
        type=int,
        default=1,  # on 2 shared cores torch's second thread spin-waits while other processes run
        help="CPU threads torch may use while scoring (0: torch's default, one per core). (default: 1)",
    )
    return parser


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default="./data", help="Data directory holding chat.db and the models.")
    parser.add_argument(
        "--base-model",
        default=None,
        help="Base model the reward model builds on: a local path, an HF id, or 'default' "
        "(SmolLM2-135M-Instruct prepared in the data dir). train-rm defaults to 'default'; "
        "evaluate-rm defaults to the base recorded with the reward model.",
    )


def run_train_rm(args: argparse.Namespace) -> dict[str, object]:
    cfg = from_namespace(RewardConfig, args)
    rows = newest_groups(exported_pairs(args.data_dir), max_pairs=cfg.max_pairs)  # --max-pairs, as in a round
    train, held_out = split_by_group(rows, eval_fraction=cfg.eval_fraction, seed=cfg.seed)
    # Refuse before the base model is resolved: preparing it can take minutes.
    check_enough(train, cfg.min_pairs, "preference pairs for training")
    base = resolve_model(args.base_model or DEFAULT_MODEL, args.data_dir)
    out_dir = new_reward_model_dir(args.data_dir)
    metrics = train_reward_model(base_model_path=base, train_rows=train, eval_rows=held_out, cfg=cfg, out_dir=out_dir)
    accuracy = metrics["held_out_accuracy"]
    return {
        "reward_model": out_dir,
        "train_pairs": metrics["train_pairs"],
        "held_out_pairs": metrics["held_out_pairs"],
        "train_seconds": metrics["train_seconds"],
        "accuracy": math.nan if accuracy is None else accuracy,  # nan: --eval-fraction 0 held nothing out
    }


def run_evaluate_rm(args: argparse.Namespace) -> dict[str, object]:
    rows = load_pairs_file(args.pairs)  # a bad file is refused before any model is loaded
    if not rows:
        raise CommandError(f"{args.pairs} holds no preference pairs.")
    rm_dir = Path(args.rm) if args.rm else newest_reward_model(args.data_dir)
    base = resolve_model(args.base_model, args.data_dir) if args.base_model else None
    with cpu_threads(args.num_threads):
        scorer = RewardScorer.load(rm_dir, base_model_path=base)
        accuracy = pairwise_accuracy(scorer, rows)
    return {"reward_model": rm_dir, "pairs": len(rows), "accuracy": accuracy}


def exported_pairs(data_dir: str) -> list[dict]:
    if not db_path(data_dir).is_file():
        raise CommandError(f"There is no database at {db_path(data_dir)}; check --data-dir.")
    with FeedbackStore.open(data_dir) as store:
        return preference_pairs(store)


def newest_reward_model(data_dir: str | Path) -> Path:
    """The reward model directory whose reward_model.json was written last, in either layout."""
    root = Path(data_dir)
    metas = [*root.glob(f"{TRAIN_RM_DIR}/*/{META_FILE}"), *root.glob(f"{ROUND_RM_GLOB}/{META_FILE}")]
    if not metas:
        raise RewardModelNotFound(
            f"No reward model found in {root}/{TRAIN_RM_DIR} or {root}/{ADAPTERS_DIR}; train one with "
            f"`python -m align train-rm` or pass --rm."
        )
    return max(metas, key=lambda path: path.stat().st_mtime).parent


def new_reward_model_dir(data_dir: str | Path) -> Path:
    """D/reward_models/<UTC timestamp>, with a suffix if a run in the same second took that name."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    root = Path(data_dir) / TRAIN_RM_DIR
    candidate, n = root / stamp, 1
    while candidate.exists() or candidate.with_name(candidate.name + ".partial").exists():
        n += 1
        candidate = root / f"{stamp}-{n}"
    return candidate


COMMANDS = {"run": round_from_args, "worker": worker_from_args, "train-rm": run_train_rm,
            "evaluate-rm": run_evaluate_rm}
REFUSALS = (CommandError, ConfigError, NotEnoughData, RewardModelNotFound, StoreError, ModelNotFound, RoundError,
            WorkerError, MainProcessFailed)  # the other ranks of an `accelerate launch` repeat rank 0's refusal


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    owner_only_umask()  # adapters, reward models and logs are made from users' conversations
    try:
        result = COMMANDS[args.command](args)
    except REFUSALS as error:
        print(error, file=sys.stderr)
        return EXIT_REFUSED
    except OSError as error:
        print(f"Could not use {error.filename or 'a file'}: {error.strerror or error}.", file=sys.stderr)
        return EXIT_REFUSED
    for key, value in result.items():  # accuracy is last in every result
        print(f"{key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
