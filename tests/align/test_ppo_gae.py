import math

import torch
from torch.testing import assert_close

from align.ppo_losses import compute_advantages

VALUES = [0.5, 0.25, 0.5]
REWARDS = [0.0, 0.0, 1.0]

# gamma = 1, lam = 0.5, worked backwards (the value after the last token is 0):
#   t=2: delta = 1 + 0    - 0.5  =  0.5    A2 = 0.5
#   t=1: delta = 0 + 0.5  - 0.25 =  0.25   A1 = 0.25  + 0.5 * 0.5 = 0.5
#   t=0: delta = 0 + 0.25 - 0.5  = -0.25   A0 = -0.25 + 0.5 * 0.5 = 0.0
# returns = A + V = [0.5, 0.75, 1.0]
# whitened A: mean 1/3, unbiased var ((1/3)^2 + 2 * (1/6)^2) / 2 = 1/12 -> [-2, 1, 1] / sqrt(3)
RETURNS = [0.5, 0.75, 1.0]
WHITENED = [-2 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3)]


def test_gae_by_hand():
    advantages, returns = compute_advantages(
        torch.tensor([VALUES]), torch.tensor([REWARDS]), torch.ones(1, 3), gamma=1.0, lam=0.5
    )
    assert_close(returns, torch.tensor([RETURNS]))
    assert_close(advantages, torch.tensor([WHITENED]))


def test_gamma_discounts_later_rewards():
    # zero values, lam = 1: returns are discounted reward sums 1 + 0.5 + 0.25, 1 + 0.5, 1
    _, returns = compute_advantages(torch.zeros(1, 3), torch.ones(1, 3), torch.ones(1, 3), gamma=0.5, lam=1.0)
    assert_close(returns, torch.tensor([[1.75, 1.5, 1.0]]))


def test_padding_does_not_leak_into_real_positions():
    # Two padded positions with large values and rewards: masked out, they must change nothing.
    advantages, returns = compute_advantages(
        torch.tensor([VALUES + [7.0, 9.0]]),
        torch.tensor([REWARDS + [3.0, 5.0]]),
        torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0]]),
        gamma=1.0,
        lam=0.5,
    )
    assert_close(returns[:, :3], torch.tensor([RETURNS]))
    assert_close(advantages, torch.tensor([WHITENED + [0.0, 0.0]]))
