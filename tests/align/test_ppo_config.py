from dataclasses import fields

import pytest

from align.ppo import PPOConfig, PPOConfigError


def test_every_field_has_help():
    assert [f.name for f in fields(PPOConfig) if not f.metadata.get("help")] == []


def test_mini_batch_size_must_divide_batch_size():
    with pytest.raises(PPOConfigError, match="must be positive and divide batch_size"):
        PPOConfig(batch_size=8, mini_batch_size=3)


def test_total_episodes_must_hold_one_batch():
    with pytest.raises(PPOConfigError, match="less than one batch"):
        PPOConfig(batch_size=8, mini_batch_size=4, total_episodes=4)
