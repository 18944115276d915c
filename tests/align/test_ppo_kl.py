import pytest
import torch
from torch.testing import assert_close

from align.ppo import PPOConfig
from align.ppo_losses import (AdaptiveKLController, FixedKLController, compute_rewards, kl_controller_for,
                              kl_estimate)

LOGPROBS = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, -9.0]])
REF_LOGPROBS = torch.tensor([[-1.5, -2.0, -2.0], [-2.0, 0.0, 0.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # the second answer is one token shorter
# logp - ref = [[0.5, 0, -1], [1, -1, (padding)]]


def test_rewards_are_kl_penalty_plus_score_on_last_real_token():
    rewards, kl = compute_rewards(torch.tensor([1.0, 2.0]), LOGPROBS, REF_LOGPROBS, MASK, kl_coef=0.1)
    assert_close(kl, torch.tensor([[0.5, 0.0, -1.0], [1.0, -1.0, 0.0]]))
    assert_close(
        rewards,
        torch.tensor([
            [-0.05, 0.0, 0.1 + 1.0],  # score 1 on the third token
            [-0.1, 0.1 + 2.0, 0.0],  # score 2 on the second token; nothing on padding
        ]),
    )


def test_kl_estimate_sums_over_each_answer():
    per_answer, mean = kl_estimate(LOGPROBS, REF_LOGPROBS, MASK)
    assert per_answer.tolist() == pytest.approx([-0.5, 0.0])
    assert mean.item() == pytest.approx(-0.25)


def test_adaptive_beta_rises_when_kl_is_above_target():
    controller = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    controller.update(9.0, n_steps=100)  # error 9/6 - 1 = 0.5, clipped to 0.2
    assert controller.value == pytest.approx(0.1 * (1 + 0.2 * 100 / 10000))


def test_adaptive_beta_falls_when_kl_is_below_target_but_not_below_its_start():
    controller = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    controller.update(9.0, n_steps=100)  # up by 0.2 %
    controller.update(5.0, n_steps=100)  # error 5/6 - 1 = -1/6, inside the clip
    assert controller.value == pytest.approx(0.1 * (1 + 0.2 * 100 / 10000) * (1 - (1 / 6) * 100 / 10000))
    for _ in range(10):
        controller.update(0.0, n_steps=100)
    assert controller.value == 0.1  # a run starts at KL 0: that alone must not loosen the penalty


def test_default_horizon_lets_beta_catch_a_round_running_past_its_target():
    cfg = PPOConfig()
    controller = kl_controller_for(cfg)
    for _ in range(20):  # half a round of 16-episode batches, all 50 % over the target
        controller.update(cfg.target_kl * 1.5, n_steps=cfg.batch_size)
    assert controller.value > 5 * cfg.init_kl_coef  # at the old horizon (10000) it moved 0.6 %


def test_fixed_beta_stays():
    controller = FixedKLController(0.1)
    controller.update(100.0, n_steps=100)
    assert controller.value == 0.1
