"""RLOO stops when a batch's KL to the base model passes max_kl and keeps the last weights within it,
as PPO does (test_ppo_kl_guard.py)."""

from transformers import AutoModelForCausalLM, AutoTokenizer

from align.ppo import PPOConfig, build_policy
from align.rloo import RLOOConfig, RLOOTrainer
from tests.align.tiny_chat import RuleScorer, save_tiny_chat_model, user_prompts


def config(max_kl: float) -> RLOOConfig:
    return RLOOConfig(learning_rate=3e-2, k=4, prompts_per_step=2, total_episodes=8 * 12, max_new_tokens=8,
                      kl_coef=0.0, missing_eos_penalty=0.0, lora_r=8, lora_alpha=16, max_kl=max_kl,
                      packed_weights=False)


def lora_weights(policy):
    return {n: p.detach().clone() for n, p in policy.named_parameters() if "lora_" in n}


def test_rloo_stops_past_max_kl_with_the_weights_of_the_last_batch_within_it(tmp_path, one_torch_thread):
    base = save_tiny_chat_model(tmp_path / "base")
    tokenizer = AutoTokenizer.from_pretrained(base)
    prompts = user_prompts(16, seed=1)

    def trainer(max_kl: float) -> RLOOTrainer:
        policy = build_policy(AutoModelForCausalLM.from_pretrained(base), PPOConfig(lora_r=8, lora_alpha=16))
        return RLOOTrainer(model=policy, tokenizer=tokenizer, score=RuleScorer().score, cfg=config(max_kl))

    kls = [s["kl"] for s in trainer(0.0).train(prompts)]
    assert max(kls) > 1.0, kls  # beta 0 and a big learning rate: the policy runs away from the base model
    limit = max(kls) / 2
    first_past = next(i for i, kl in enumerate(kls) if kl > limit)

    limited = trainer(limit)
    weights_before_step = []  # [i]: the weights that sample batch i
    original_step = limited.step

    def recording_step(prompt_ids, chats):
        weights_before_step.append(lora_weights(limited.model))
        return original_step(prompt_ids, chats)

    limited.step = recording_step
    stats = limited.train(prompts)

    assert [s["kl"] for s in stats] == kls[:first_past + 1]
    assert limited.stop_reason is not None and limited.stop_reason.startswith("RLOO stopped")
    kept = weights_before_step[max(first_past - 1, 0)]
    after = lora_weights(limited.model)
    assert all(after[n].equal(kept[n]) for n in kept)
