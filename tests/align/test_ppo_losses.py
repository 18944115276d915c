import math

import pytest
import torch

from align.ppo_losses import policy_loss, value_loss

MASK = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])  # the last token is padding


def test_clipped_surrogate():
    ratios = [1.1, 1.5, 0.5, 0.5, 50.0]
    advantages = torch.tensor([[1.0, 1.0, -1.0, 1.0, 1.0]])
    logprobs = torch.log(torch.tensor([ratios]))
    # clip range 0.2: per token max(-A * r, -A * clip(r, 0.8, 1.2))
    #   A= 1, r=1.1: max(-1.1, -1.1) = -1.1  inside the range
    #   A= 1, r=1.5: max(-1.5, -1.2) = -1.2  clipped
    #   A=-1, r=0.5: max( 0.5,  0.8) =  0.8  clipped
    #   A= 1, r=0.5: max(-0.5, -0.8) = -0.5  outside the range, but the unclipped term is the pessimistic one
    #   padding (r=50) ignored
    loss, clipfrac, approx_kl = policy_loss(logprobs, torch.zeros(1, 5), advantages, MASK, clip_range=0.2)
    assert loss.item() == pytest.approx((-1.1 - 1.2 + 0.8 - 0.5) / 4)
    assert clipfrac.item() == 2 / 4
    expected_kl = 0.5 * sum(math.log(r) ** 2 for r in ratios[:4]) / 4
    assert approx_kl.item() == pytest.approx(expected_kl)


def test_no_change_no_clipping():
    advantages = torch.tensor([[1.0, -2.0, 3.0, 0.5, 9.0]])
    loss, clipfrac, approx_kl = policy_loss(torch.zeros(1, 5), torch.zeros(1, 5), advantages, MASK, clip_range=0.2)
    assert loss.item() == pytest.approx(-(1.0 - 2.0 + 3.0 + 0.5) / 4)  # ratio 1: -mean(A)
    assert clipfrac.item() == 0.0
    assert approx_kl.item() == 0.0


def test_clipped_value_loss():
    old_values = torch.zeros(1, 5)
    values = torch.tensor([[0.1, 0.5, -0.5, 0.0, 40.0]])
    returns = torch.tensor([[1.0, 1.0, 0.0, 2.0, 0.0]])
    # clip range 0.2: per token max((v - R)^2, (clip(v, -0.2, 0.2) - R)^2)
    #   v= 0.1, R=1: max(0.81, 0.81) = 0.81  inside the range
    #   v= 0.5, R=1: max(0.25, 0.64) = 0.64  clipped
    #   v=-0.5, R=0: max(0.25, 0.04) = 0.25  outside the range, unclipped error is larger
    #   v= 0,   R=2: max(4,    4)    = 4
    #   padding ignored
    loss, clipfrac = value_loss(values, old_values, returns, MASK, clip_range_value=0.2)
    assert loss.item() == pytest.approx(0.5 * (0.81 + 0.64 + 0.25 + 4.0) / 4)
    assert clipfrac.item() == 1 / 4
