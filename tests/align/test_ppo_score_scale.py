"""PPO optimises the reward model's scores at one scale, whatever the reward model's: each batch's scores
are shifted and scaled to mean 0 and variance 1 before the KL penalty is added; and an answer longer than a
rollout is not punished by default (rollouts are shorter than served answers)."""

import torch
from torch.testing import assert_close

from align.ppo import PPOConfig, score_rollout
from align.rollout import Rollout


def rollout(ended: list[bool]) -> Rollout:
    b = len(ended)
    return Rollout(query_ids=torch.ones(b, 2, dtype=torch.long), query_mask=torch.ones(b, 2, dtype=torch.long),
                   response_ids=torch.ones(b, 3, dtype=torch.long), response_mask=torch.ones(b, 3, dtype=torch.long),
                   ended_with_eos=torch.tensor(ended))


def scorer(values: list[float]):
    return lambda queries, responses: values[: len(responses)]


def test_scores_at_any_scale_give_the_same_shaped_scores():
    small, large = [0.01, 0.03, 0.02, 0.06], [10.0, 30.0, 20.0, 60.0]
    raw_small, shaped_small = score_rollout(scorer(small), rollout([True] * 4), PPOConfig())
    raw_large, shaped_large = score_rollout(scorer(large), rollout([True] * 4), PPOConfig())
    assert_close(raw_small, torch.tensor(small))  # the raw scores are reported as they are
    assert_close(shaped_small, shaped_large, atol=1e-4, rtol=1e-4)  # whitening adds 1e-8 to the variance
    assert abs(shaped_small.mean().item()) < 1e-6 and abs(shaped_small.std().item() - 1) < 1e-4


def test_unnormalised_scores_keep_their_scale():
    _, shaped = score_rollout(scorer([0.5, 1.5]), rollout([True, True]), PPOConfig(normalize_scores=False))
    assert shaped.tolist() == [0.5, 1.5]


def test_an_answer_cut_at_the_rollout_length_is_not_punished_by_default():
    _, shaped = score_rollout(scorer([1.0, 1.0, 2.0, 2.0]), rollout([True, False, True, False]), PPOConfig())
    assert_close(shaped[0], shaped[1])
    assert_close(shaped[2], shaped[3])
    cfg = PPOConfig(missing_eos_penalty=1.0, normalize_scores=False)
    _, penalised = score_rollout(scorer([1.0, 1.0]), rollout([True, False]), cfg)
    assert penalised.tolist() == [1.0, 0.0]
