"""Too few preference pairs: training is refused with a clear error and nothing is saved."""

from __future__ import annotations

import json

import pytest

from align.__main__ import main
from align.config import RewardConfig
from align.data import NotEnoughData
from align.reward import train_reward_model
from storage.importer import import_pairs
from storage.store import FeedbackStore


def pair(i: int) -> dict:
    return {
        "prompt": [{"role": "user", "content": f"Question {i}?"}],
        "chosen": [{"role": "assistant", "content": "A kind answer."}],
        "rejected": [{"role": "assistant", "content": "A rude answer."}],
        "group": f"ranking:{i}",
    }


def test_train_reward_model_refuses_and_saves_nothing(tmp_path):
    with pytest.raises(NotEnoughData, match="Only 3 preference pairs for training are available; at least 10"):
        train_reward_model(base_model_path=tmp_path / "never-loaded", train_rows=[pair(i) for i in range(3)],
                           eval_rows=[], cfg=RewardConfig(min_pairs=10), out_dir=tmp_path / "rm")

    assert list(tmp_path.iterdir()) == []


def test_train_rm_command_exits_2_with_one_sentence(tmp_path, capsys):
    pairs_file = tmp_path / "pairs.jsonl"
    pairs_file.write_text("".join(json.dumps({k: v for k, v in pair(i).items() if k != "group"}) + "\n"
                                  for i in range(5)))
    with FeedbackStore.open(tmp_path / "data") as store:
        import_pairs(store, pairs_file)

    code = main(["train-rm", "--data-dir", str(tmp_path / "data"), "--min-pairs", "10"])

    assert code == 2
    assert capsys.readouterr().err == "Only 4 preference pairs for training are available; at least 10 are needed to train.\n"
    assert not (tmp_path / "data" / "reward_models").exists()
