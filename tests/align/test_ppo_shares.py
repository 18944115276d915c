"""On several ranks every rank rolls out an equal share of each batch and minibatch: sizes that do not
split evenly are refused before any training (and before any rank waits for another)."""

import pytest
import torch

from align.distributed import Ranks
from align.ppo import PPOConfig, PPOConfigError, PPOTrainer, build_policy


def test_minibatches_must_split_evenly_over_the_ranks(tiny_llama, special_tokens):
    cfg = PPOConfig(batch_size=6, mini_batch_size=3, total_episodes=6, lora_r=4)
    with pytest.raises(PPOConfigError, match=r"multiples of the number of training processes \(2\)"):
        PPOTrainer(model=build_policy(tiny_llama(), cfg), tokenizer=special_tokens, cfg=cfg,
                   score_fn=lambda queries, responses: torch.zeros(len(responses)), ranks=Ranks(world_size=2))
