import pytest
import torch
from torch.testing import assert_close

from align.ppo_losses import masked_mean, masked_var, masked_whiten

# The last column is padding with a value far off the real ones: if it leaked, every number would change.
X = torch.tensor([[2.0, 4.0, 6.0, 100.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0, 0.0]])


def test_masked_mean_ignores_padding():
    assert masked_mean(X, MASK).item() == 4.0  # (2 + 4 + 6) / 3


def test_masked_mean_along_a_dim():
    x = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert masked_mean(x, mask, dim=1).tolist() == [1.0, 4.0]


def test_masked_var_unbiased_and_biased():
    # squared deviations from 4: 4, 0, 4 -> sum 8
    assert masked_var(X, MASK).item() == pytest.approx(8 / 2)
    assert masked_var(X, MASK, unbiased=False).item() == pytest.approx(8 / 3)


def test_masked_var_needs_two_values():
    with pytest.raises(ValueError, match="at least 2"):
        masked_var(X, torch.tensor([[1.0, 0.0, 0.0, 0.0]]))


def test_masked_whiten():
    # mean 4, unbiased std 2 -> (x - 4) / 2; padding comes out as 0
    assert_close(masked_whiten(X, MASK), torch.tensor([[-1.0, 0.0, 1.0, 0.0]]))


def test_masked_whiten_keeping_the_mean():
    # scaled to std 1 around the same mean 4: 4 + (x - 4) / 2
    assert_close(masked_whiten(X, MASK, shift_mean=False), torch.tensor([[3.0, 4.0, 5.0, 0.0]]))
