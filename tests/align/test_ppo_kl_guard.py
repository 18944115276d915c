"""PPO stops when a batch's KL to the base model passes max_kl and keeps the last weights within it."""

import torch

from align.ppo import PPOConfig, PPOTrainer, build_policy

TARGET = range(16, 32)


def fraction_of_target_tokens(queries, responses):
    return torch.tensor([sum(t in TARGET for t in r) / len(r) for r in responses])


def config(max_kl: float) -> PPOConfig:
    return PPOConfig(learning_rate=3e-2, batch_size=8, mini_batch_size=8, epochs=4, max_new_tokens=8,
                     init_kl_coef=0.0, missing_eos_penalty=0.0, lora_r=8, lora_alpha=16, total_episodes=8 * 12,
                     max_kl=max_kl, seed=0)


def prompts() -> list[list[int]]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(2, 64, (4,), generator=generator).tolist() for _ in range(16)]


def lora_weights(policy) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in policy.named_parameters() if "lora_" in n}


def test_ppo_stops_past_max_kl_with_the_weights_of_the_last_batch_within_it(tiny_llama, special_tokens,
                                                                            one_torch_thread):
    unlimited = PPOTrainer(model=build_policy(tiny_llama(), config(0.0)), tokenizer=special_tokens,
                           score_fn=fraction_of_target_tokens, cfg=config(0.0))
    kls = [s["kl"] for s in unlimited.train(prompts())]
    assert max(kls) > 1.0, kls  # beta 0 and a big learning rate: the policy runs away from the base model
    limit = max(kls) / 2
    first_past = next(i for i, kl in enumerate(kls) if kl > limit)

    policy = build_policy(tiny_llama(), config(limit))
    weights_before_step = []  # [i]: the weights that sample batch i
    trainer = PPOTrainer(model=policy, tokenizer=special_tokens, score_fn=fraction_of_target_tokens,
                         cfg=config(limit))
    original_step = trainer.step

    def recording_step(batch):
        weights_before_step.append(lora_weights(policy))
        return original_step(batch)

    trainer.step = recording_step
    stats = trainer.train(prompts())

    assert [s["kl"] for s in stats] == kls[:first_past + 1]  # the same run up to the first batch past the limit
    assert trainer.stop_reason is not None and f"{limit:.2f}" in trainer.stop_reason
    kept = weights_before_step[max(first_past - 1, 0)]
    after = lora_weights(policy)
    assert all(torch.equal(after[n], kept[n]) for n in kept)  # the weights that sampled the last batch within it


def test_no_limit_trains_every_step(tiny_llama, special_tokens, one_torch_thread):
    trainer = PPOTrainer(model=build_policy(tiny_llama(), config(0.0)), tokenizer=special_tokens,
                         score_fn=fraction_of_target_tokens, cfg=config(0.0))
    assert len(trainer.train(prompts())) == 12 and trainer.stop_reason is None
