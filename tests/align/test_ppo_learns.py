import torch

from align.ppo import PPOConfig, PPOTrainer, build_policy
from align.rollout import generate_rollouts

STEPS = 30  # over 8 seed/prompt draws the gain was +0.16 to +0.39; 20 steps gave as little as +0.06
TARGET = range(16, 32)  # the score rewards answers made of these token ids: a quarter of the vocabulary


def fraction_of_target_tokens(queries, responses):
    return torch.tensor([sum(t in TARGET for t in r) / len(r) for r in responses])


def sampled_score(model, tokenizer, prompts, cfg):
    torch.manual_seed(123)  # the same sampling noise before and after training
    rollout = generate_rollouts(model, tokenizer, prompts * 4, cfg)
    return fraction_of_target_tokens(rollout.queries(), rollout.responses()).mean().item()


def test_ppo_raises_the_score_and_only_trains_the_adapter(tiny_llama, special_tokens, one_torch_thread):
    cfg = PPOConfig(
        learning_rate=1e-2,  # a tiny random model needs big steps to move in 30 PPO steps
        batch_size=16,
        mini_batch_size=8,
        epochs=4,
        max_new_tokens=8,
        init_kl_coef=0.01,  # the score is at most 1: a KL of a few nats at beta 0.05 would cancel it
        adaptive_kl=False,  # the random model moves ~10 nats here, past the default target and limit;
        max_kl=0.0,  # both have their own tests (test_ppo_kl.py, test_ppo_kl_guard.py)
        missing_eos_penalty=0.0,  # the random model rarely stops; the rule only looks at token ids
        lora_r=8,
        lora_alpha=16,
        total_episodes=16 * STEPS,
        seed=0,
    )
    policy = build_policy(tiny_llama(), cfg)
    generator = torch.Generator().manual_seed(1)
    lengths = torch.randint(2, 6, (32,), generator=generator).tolist()
    prompts = [torch.randint(2, 64, (n,), generator=generator).tolist() for n in lengths]
    base_before = {n: p.detach().clone() for n, p in policy.named_parameters() if "lora_" not in n}
    lora_before = {n: p.detach().clone() for n, p in policy.named_parameters() if "lora_" in n}
    score_before = sampled_score(policy, special_tokens, prompts, cfg)

    trainer = PPOTrainer(model=policy, tokenizer=special_tokens, score_fn=fraction_of_target_tokens, cfg=cfg)
    stats = trainer.train(prompts)

    score_after = sampled_score(policy, special_tokens, prompts, cfg)
    assert len(stats) == STEPS
    assert score_after > score_before + 0.1, (score_before, score_after)  # seen: 0.257 -> 0.516
    after = dict(policy.named_parameters())
    assert all(torch.equal(after[n], p) for n, p in base_before.items())
    assert all(not torch.equal(after[n], p) for n, p in lora_before.items() if "lora_B" in n)
