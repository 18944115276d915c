import torch

from align.ppo import PPOConfig, PPOTrainer, build_policy

PROMPTS = [[5, 6, 7], [8, 9], [10, 11, 12, 13], [14]]


def small_tokens(queries, responses):
    return torch.tensor([sum(t < 10 for t in r) / len(r) for r in responses])


def run(tiny_llama, special_tokens, seed):
    cfg = PPOConfig(batch_size=4, mini_batch_size=2, max_new_tokens=4, total_episodes=8, lora_r=4, seed=seed)
    trainer = PPOTrainer(
        model=build_policy(tiny_llama(), cfg), tokenizer=special_tokens, score_fn=small_tokens, cfg=cfg
    )
    # Everything but the phase timings (rollout_s, score_s, update_s), which are wall clock.
    return [{k: v for k, v in step.items() if not k.endswith("_s")} for step in trainer.train(PROMPTS)]


def test_same_seed_same_run(tiny_llama, special_tokens, one_torch_thread):
    assert run(tiny_llama, special_tokens, seed=3) == run(tiny_llama, special_tokens, seed=3)


def test_other_seed_other_run(tiny_llama, special_tokens, one_torch_thread):
    assert run(tiny_llama, special_tokens, seed=3) != run(tiny_llama, special_tokens, seed=4)
