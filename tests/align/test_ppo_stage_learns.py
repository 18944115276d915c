from transformers import AutoModelForCausalLM, AutoTokenizer

from align.policy import POLICY_STAGES, PolicyInputs
from align.ppo import PPOConfig
from tests.align.tiny_chat import (RuleScorer, lora_b_all_trained, sampled_reward, save_tiny_chat_model,
                                   user_prompts)

STEPS = 30  # as tests/align/test_ppo_learns.py, which trains PPOTrainer itself


def test_ppo_stage_raises_the_rule_reward_and_saves_the_value_head(tmp_path, one_torch_thread):
    base = save_tiny_chat_model(tmp_path / "base")
    prompts = user_prompts(32, seed=1)
    tokenizer = AutoTokenizer.from_pretrained(base)
    before = sampled_reward(AutoModelForCausalLM.from_pretrained(base), tokenizer, prompts)
    cfg = PPOConfig(learning_rate=1e-2, batch_size=16, mini_batch_size=8, epochs=4, max_new_tokens=8,
                    init_kl_coef=0.01, adaptive_kl=False, max_kl=0.0,  # a random model moves ~10 nats
                    missing_eos_penalty=0.0, lora_r=8, lora_alpha=16, total_episodes=16 * STEPS,
                    packed_weights=False)
    inputs = PolicyInputs(base_path=str(base), start_adapter=None, scorer=RuleScorer(), train_prompts=prompts,
                          pairs=[], thumbs=[], out_dir=tmp_path / "out")

    result = POLICY_STAGES["ppo"].train(inputs, cfg)

    after = sampled_reward(result.policy, tokenizer, prompts)
    assert len(result.metrics["steps"]) == STEPS and {"reward", "kl", "beta"} <= set(result.metrics["steps"][0])
    assert after > before + 0.1, (before, after)
    assert lora_b_all_trained(result.policy)
    assert {"adapter_config.json", "value_head.pt"} <= {p.name for p in (tmp_path / "out").iterdir()}
