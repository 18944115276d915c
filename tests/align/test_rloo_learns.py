from transformers import AutoModelForCausalLM, AutoTokenizer

from align.policy import POLICY_STAGES, PolicyInputs
from align.rloo import RLOOConfig
from tests.align.tiny_chat import (RuleScorer, lora_b_all_trained, sampled_reward, save_tiny_chat_model,
                                   user_prompts)

STEPS = 50  # lr 1e-2: 30 steps gave +0.12, 50 gave 0.28 -> 0.73


def test_rloo_stage_raises_the_rule_reward(tmp_path, one_torch_thread):
    base = save_tiny_chat_model(tmp_path / "base")
    prompts = user_prompts(32, seed=1)
    tokenizer = AutoTokenizer.from_pretrained(base)
    before = sampled_reward(AutoModelForCausalLM.from_pretrained(base), tokenizer, prompts)
    cfg = RLOOConfig(learning_rate=1e-2,  # a tiny random model needs big steps to move in 50 steps
                     k=4, prompts_per_step=4, total_episodes=16 * STEPS, max_new_tokens=8,
                     kl_coef=0.01,  # the rule's reward is at most 1: a few nats at 0.05 would cancel it
                     missing_eos_penalty=0.0,  # the random model rarely stops; the rule only reads words
                     max_kl=0.0,  # a random model moves far; the guard has its own test (test_rloo_kl_guard.py)
                     lora_r=8, lora_alpha=16, packed_weights=False)
    inputs = PolicyInputs(base_path=str(base), start_adapter=None, scorer=RuleScorer(), train_prompts=prompts,
                          pairs=[], thumbs=[], out_dir=tmp_path / "out")

    result = POLICY_STAGES["rloo"].train(inputs, cfg)

    after = sampled_reward(result.policy, tokenizer, prompts)
    assert len(result.metrics["steps"]) == STEPS
    assert after > before + 0.2, (before, after)  # seen: 0.28 -> 0.73
    assert lora_b_all_trained(result.policy)
    assert (tmp_path / "out" / "adapter_config.json").is_file()
