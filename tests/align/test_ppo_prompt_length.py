"""PPO trains on prompts up to PPOConfig.max_prompt_tokens long, keeping their order, and still fills
a batch when too few are that short."""

from align.ppo import PPOConfig
from align.rollout import fitting_prompts

PROMPTS = [[1] * 5, [2] * 50, [3] * 3, [4] * 20, [5] * 9]


def test_only_prompts_that_fit_are_kept_in_their_order():
    assert fitting_prompts(PROMPTS, 10, at_least=2) == [[1] * 5, [3] * 3, [5] * 9]


def test_the_shortest_longer_prompts_fill_a_batch():
    assert fitting_prompts(PROMPTS, 4, at_least=3) == [[3] * 3, [1] * 5, [5] * 9]


def test_zero_means_no_limit():
    assert fitting_prompts(PROMPTS, 0, at_least=8) == PROMPTS


def test_the_default_limit_is_on():
    assert PPOConfig().max_prompt_tokens > 0
