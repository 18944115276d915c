"""`python -m align evaluate-rm` prints accuracy=<float> last, and refuses with exit 2 when there is no RM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from align.__main__ import main
from align.config import RewardConfig
from align.reward import RewardScorer, pairwise_accuracy, train_reward_model


@pytest.fixture
def pairs_file(tmp_path) -> Path:
    rows = [{"prompt": [{"role": "user", "content": f"Question {i}?"}],
             "chosen": [{"role": "assistant", "content": "A kind answer."}],
             "rejected": [{"role": "assistant", "content": "A rude answer."}]} for i in range(4)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_evaluate_rm_prints_accuracy_last(tiny_base, pairs_file, tmp_path, capsys):
    data_dir = tmp_path / "data"
    rows = [{**json.loads(line), "group": str(i)} for i, line in enumerate(pairs_file.read_text().splitlines())]
    cfg = RewardConfig(epochs=1, batch_size=4, gradient_accumulation=1, max_length=32, lora_r=4, min_pairs=1)
    train_reward_model(base_model_path=tiny_base, train_rows=rows, eval_rows=[], cfg=cfg,
                       out_dir=data_dir / "reward_models" / "20250101T000000Z")
    capsys.readouterr()

    code = main(["evaluate-rm", "--data-dir", str(data_dir), "--pairs", str(pairs_file)])

    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[-2:-1] == ["pairs=4"]
    assert lines[-1].startswith("accuracy=")
    # The accuracy of that very reward model on that file, as the library computes it (a multiple of 1/4).
    scorer = RewardScorer.load(data_dir / "reward_models" / "20250101T000000Z", base_model_path=tiny_base)
    expected = pairwise_accuracy(scorer, rows)
    assert float(lines[-1].removeprefix("accuracy=")) == pytest.approx(expected, abs=1e-6)


def test_evaluate_rm_without_a_reward_model_exits_2(pairs_file, tmp_path, capsys):
    code = main(["evaluate-rm", "--data-dir", str(tmp_path), "--pairs", str(pairs_file)])

    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith(f"No reward model found in {tmp_path}/reward_models or {tmp_path}/adapters;")
    assert captured.out == ""
