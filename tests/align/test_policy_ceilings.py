"""On their defaults, the sampling methods' step ceilings are not what ends a round: its time budget is. A round
whose RLOO stopped at its ceiling of 8 steps trained for 100 s of the 640 it had and learned nothing measurable
(bench/results/efficacy-however-rankings+thumbs-rloo-ceiling.json)."""

from align.ppo import PPOConfig
from align.rloo import RLOOConfig

# A 15-minute round on 2 CPU cores trains ~640 s at ~19 s per step of 16 answers of 64 tokens (BENCHMARKS.md).
STEPS_A_ROUND_HAS_TIME_FOR = 640 // 19


def test_rloo_default_ceiling_leaves_the_round_budget_to_decide():
    cfg = RLOOConfig()
    assert cfg.total_episodes // cfg.episodes_per_step > STEPS_A_ROUND_HAS_TIME_FOR


def test_ppo_default_ceiling_leaves_the_round_budget_to_decide():
    cfg = PPOConfig()
    assert cfg.total_episodes // cfg.batch_size > STEPS_A_ROUND_HAS_TIME_FOR


def test_rloo_samples_answers_as_long_as_ppo():
    assert RLOOConfig().max_new_tokens == PPOConfig().max_new_tokens
