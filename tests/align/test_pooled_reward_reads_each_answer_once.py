"""A ranking of K answers makes C(K, 2) pairs of only K answers: the pooled reward model reads each distinct
(prompt, answer) once, and every pair gets the features of its own two answers."""

from __future__ import annotations

import torch

from align.pooled_reward import pair_features

PROMPT = [{"role": "user", "content": "Which fruit?"}]
ANSWERS = ["apple", "pear", "plum", "fig"]


class CountingFeatures:
    """Stands in for PooledFeatures: answer i's feature is [i], and every answer read is remembered."""

    def __init__(self) -> None:
        self.read: list[str] = []

    def __call__(self, prompts, answers) -> torch.Tensor:
        self.read += answers
        return torch.tensor([[float(ANSWERS.index(a))] for a in answers])


def test_six_pairs_of_a_four_answer_ranking_read_four_answers():
    pairs = [{"prompt": PROMPT, "chosen": [{"role": "assistant", "content": ANSWERS[i]}],
              "rejected": [{"role": "assistant", "content": ANSWERS[j]}]} for i in range(4) for j in range(i + 1, 4)]
    features = CountingFeatures()

    chosen, rejected = pair_features(features, pairs)

    assert sorted(features.read) == sorted(ANSWERS)
    assert chosen.squeeze(1).tolist() == [0, 0, 0, 1, 1, 2]
    assert rejected.squeeze(1).tolist() == [1, 2, 3, 2, 3, 3]
