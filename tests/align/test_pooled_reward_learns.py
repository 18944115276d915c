"""The pooled reward model (the default kind) learns which answers users prefer from pairs alone, saves
itself as a directory that RewardScorer.load reads back, and scores the same after the reload; a head
saved with the log length alone (before its square joined the features) reads back with its one term, and
one with the log length and six bumps with its seven."""

from __future__ import annotations

import json

import pytest

from align.config import RewardConfig
from align.data import split_by_group
from align.reward import RewardScorer, pairwise_accuracy, train_reward_model
from tests.align.test_reward_learns import keyword_pairs


@pytest.mark.parametrize("length_terms", [2, 1, 7])
def test_pooled_reward_model_learns_separable_pairs(tiny_base, tmp_path, length_terms):
    train, held_out = split_by_group(keyword_pairs(96), eval_fraction=0.25, seed=0)
    cfg = RewardConfig(max_length=64, min_pairs=8, length_terms=length_terms)
    assert cfg.kind == "pooled"
    out = tmp_path / "rm"

    metrics = train_reward_model(base_model_path=tiny_base, train_rows=train, eval_rows=held_out, cfg=cfg,
                                 out_dir=out)

    assert metrics["held_out_pairs"] == 24
    assert metrics["held_out_accuracy"] >= 0.9
    assert json.loads((out / "reward_model.json").read_text())["kind"] == "pooled"
    assert json.loads((out / "rm_metrics.json").read_text())["held_out_accuracy"] == metrics["held_out_accuracy"]
    scorer = RewardScorer.load(out)
    assert pairwise_accuracy(scorer, held_out) == metrics["held_out_accuracy"]
    prompt = train[0]["prompt"]
    glad, no = scorer.score([prompt, prompt], [train[0]["chosen"][0]["content"], train[0]["rejected"][0]["content"]])
    assert glad > no
