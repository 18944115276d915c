"""Averages and maxima over an answer's tokens do not show its length, and length is what users judge most
often: the pooled features end with the log of the answer's length in tokens (the template's end-of-turn
tokens included), and a reward model on them learns users who prefer the shorter of two alike answers."""

from __future__ import annotations

import math

from align.config import RewardConfig
from align.data import split_by_group
from align.pooled_reward import PooledFeatures, load_backbone
from align.reward import encode_answer_parts, load_tokenizer, train_reward_model
from tests.align.test_reward_learns import TOPICS

PROMPT = [{"role": "user", "content": "Tell me about tea."}]


def test_the_last_feature_is_the_log_length(tiny_base):
    tokenizer = load_tokenizer(tiny_base)
    features = PooledFeatures(load_backbone(tiny_base, num_layers=0), tokenizer, max_length=96)
    answers = ["tea", "tea " * 12]

    rows = features([PROMPT, PROMPT], answers)

    for row, answer in zip(rows, answers):
        ids, start = encode_answer_parts(tokenizer, PROMPT, answer, max_length=96)
        assert math.isclose(row[-1].item(), math.log1p(len(ids) - start), rel_tol=1e-6)


def brevity_pairs(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        rows.append({"prompt": [{"role": "user", "content": f"Tell me about {topic}, number {i}."}],
                     "chosen": [{"role": "assistant", "content": " ".join([topic] * (1 + i % 3))}],
                     "rejected": [{"role": "assistant", "content": " ".join([topic] * (8 + i % 5))}],
                     "group": f"ranking:{i}"})
    return rows


def test_the_shorter_of_two_alike_answers_wins(tiny_base, tmp_path):
    train, held_out = split_by_group(brevity_pairs(96), eval_fraction=0.25, seed=0)

    metrics = train_reward_model(base_model_path=tiny_base, train_rows=train, eval_rows=held_out,
                                 cfg=RewardConfig(max_length=96, min_pairs=8), out_dir=tmp_path / "rm")

    assert metrics["held_out_accuracy"] >= 0.9
