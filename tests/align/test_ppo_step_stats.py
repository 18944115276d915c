import torch

from align.ppo import PPOConfig, PPOTrainer, build_policy

STAT_KEYS = {
    "reward", "kl", "beta", "entropy", "clipfrac", "value_loss", "policy_loss",
    "answer_length", "approx_kl", "eos_fraction",
}


def test_on_step_sees_every_step_and_its_stats(tiny_llama, special_tokens, one_torch_thread):
    cfg = PPOConfig(batch_size=4, mini_batch_size=2, max_new_tokens=4, total_episodes=12, lora_r=4)
    seen = []
    trainer = PPOTrainer(
        model=build_policy(tiny_llama(), cfg),
        tokenizer=special_tokens,
        score_fn=lambda queries, responses: torch.ones(len(responses)),
        cfg=cfg,
        on_step=lambda step, stats: seen.append((step, stats)),
    )

    stats = trainer.train([[5, 6, 7], [8, 9]])  # fewer prompts than a batch: they are reused

    assert [step for step, _ in seen] == [1, 2, 3]
    assert [s for _, s in seen] == stats == trainer.stats
    assert all(STAT_KEYS <= set(s) for s in stats)
    assert all(1 <= s["answer_length"] <= 4 for s in stats)
    assert stats[0]["reward"] == 1.0
