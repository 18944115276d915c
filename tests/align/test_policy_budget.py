"""A policy stage whose time budget has passed stops after the step it is in, and still saves its adapter; a
budget of 0 or less (the earlier stages used up the round's time) still trains one step."""

import pytest

from align.direct import DPOConfig, KTOConfig
from align.policy import POLICY_STAGES, PolicyInputs
from align.ppo import PPOConfig
from align.rloo import RLOOConfig
from tests.align.rule_feedback import rule_pairs, rule_thumbs
from tests.align.tiny_chat import RuleScorer, save_tiny_chat_model, user_prompts

TEN_STEPS = {"ppo": PPOConfig(batch_size=4, mini_batch_size=4, epochs=1, max_new_tokens=4, total_episodes=40,
                              packed_weights=False),
             "rloo": RLOOConfig(k=2, prompts_per_step=2, max_new_tokens=4, total_episodes=40, packed_weights=False),
             "dpo": DPOConfig(batch_size=2, epochs=2.5, max_length=32),  # 8 pairs: 4 steps an epoch
             "kto": KTOConfig(batch_size=4, epochs=2.5, max_length=32, with_pairs=False)}  # 16 thumbs: 4 an epoch


@pytest.mark.parametrize("budget_s", [1e-6, 0.0, -30.0])
@pytest.mark.parametrize("method", ["ppo", "rloo", "dpo", "kto"])
def test_a_spent_budget_stops_after_one_step(method, budget_s, tmp_path, one_torch_thread):
    base = save_tiny_chat_model(tmp_path / "base")
    prompts = user_prompts(8, seed=1)
    inputs = PolicyInputs(base_path=str(base), start_adapter=None, scorer=RuleScorer(), train_prompts=prompts,
                          pairs=rule_pairs(prompts, seed=2), thumbs=rule_thumbs(prompts, seed=3),
                          out_dir=tmp_path / "out", budget_s=budget_s)

    result = POLICY_STAGES[method].train(inputs, TEN_STEPS[method])

    assert len(result.metrics["steps"]) == 1
    assert (tmp_path / "out" / "adapter_config.json").is_file()
