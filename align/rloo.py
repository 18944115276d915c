"""RLOO (REINFORCE Leave-One-Out, Ahmadian et al. 2024): a critic-free on-policy method on a LoRA policy.

Each step samples k answers to each of a few prompts, scores every answer with the reward model, subtracts
beta * KL(policy || base) of that answer (summed over its tokens), and uses the mean reward of the other
k - 1 answers to the same prompt as the baseline. The loss is REINFORCE on whole answers:
-advantage * log p(answer), one gradient step per batch, so the samples are always on-policy and there is
no value head, no GAE and no clipping. Sampling, log-probs and the KL reference (the same weights with the
adapter off) come from align.rollout.

Shapes: P = prompts in a step, k = answers per prompt, B = P * k answers, T = answer length (right-padded).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from peft import PeftModel

from align.packed import packed_frozen_linears
from align.ppo import KLGuard, PPOConfig, build_value_head, prompt_batches
from align.ppo_losses import kl_estimate, masked_mean
from align.rollout import (Prompt, encode_prompts, fitting_prompts, forward_logprobs_values, generate_rollouts,
                           reference_logprobs)

ScoreTexts = Callable[[list[Any], list[str]], Sequence[float]]  # (prompts, answer texts) -> scores [B]
StepCallback = Callable[[int, dict[str, float]], None]  # (steps done so far, that step's stats)


class RLOOConfigError(ValueError):
    """An RLOOConfig whose values cannot work together."""


@dataclass
class RLOOConfig:
    """RLOO on a LoRA adapter against the round's reward model (flags --rloo-<field>)."""

    learning_rate: float = field(
        default=1e-4,  # PPO's rate in issue 15's runs on the first machine (PPO's is 2e-4 now; RLOO not re-run at it)
        metadata={"help": "AdamW learning rate for the LoRA weights."},
    )
    k: int = field(
        default=4,  # the RLOO paper's k; each answer's baseline is the mean of the other 3
        metadata={"help": "Answers sampled per prompt; each one's baseline is the mean reward of the others "
                          "(at least 2)."},
    )
    prompts_per_step: int = field(
        default=4,  # 4 prompts x 4 answers = 16 answers per gradient step
        metadata={"help": "Prompts per step; a step samples prompts_per_step * k answers."},
    )
    total_episodes: int = field(
        default=1024,  # 64 steps of 16, a ceiling as PPO's: the round's time budget ends the run (at 128, 8 steps,
        # a 300-prompt round trained RLOO for 100 s of its 640 and learned nothing measurable)
        metadata={"help": "Most answers to sample; the run does at most total_episodes // (prompts_per_step * k) "
                          "steps, fewer when the round's time budget (--time-budget-s, --policy-budget-s) ends "
                          "it first."},
    )
    mini_batch_size: int = field(
        default=8,  # answers per forward/backward pass; gradients of the whole step are summed first
        metadata={"help": "Answers per forward/backward pass (memory only: a step takes one optimizer step)."},
    )
    kl_coef: float = field(
        default=0.05,  # PPO's starting beta: one reward-model unit buys 20 nats of KL per answer
        metadata={"help": "beta: subtracted from each answer's reward per nat of KL(policy || base) of it."},
    )
    max_prompt_tokens: int = field(
        default=128,  # as PPO: a few long conversations must not set the cost of every batch
        metadata={"help": "Train only on prompts of at most this many tokens (chat template included); 0 = no "
                          "limit. If too few fit, the shortest others fill one step."},
    )
    max_new_tokens: int = field(
        default=64,  # as PPO, so the two sample the same answers: chat answers are judged on their start
        metadata={"help": "Longest sampled answer, in tokens."},
    )
    temperature: float = field(
        default=1.0,  # sample from the policy itself: REINFORCE needs the log-probs of the distribution sampled
        metadata={"help": "Sampling temperature (log-probs are computed at the same temperature)."},
    )
    max_kl: float = field(
        default=8.0,  # as PPO's: under the gate's 10-nat limit, past which a candidate is rejected anyway
        metadata={"help": "Stop when a batch's KL to the base model (nats per answer) exceeds this, and keep "
                          "the weights of the last batch within it; 0 = no limit."},
    )
    missing_eos_penalty: float = field(
        default=1.0,  # about one reward-model unit, so stopping beats rambling to the length limit. PPO's default
        # is 0 since it shortened every round's answers there; RLOO's runs (BENCHMARKS.md) used 1.0, not re-measured
        metadata={"help": "Subtracted from the reward of answers that never emitted EOS within max_new_tokens."},
    )
    max_grad_norm: float = field(
        default=1.0,  # one batch of unlucky samples must not wreck the adapter
        metadata={"help": "Gradient norm clipping threshold."},
    )
    lora_r: int = field(
        default=16,  # as PPO, so the two methods differ only in how they estimate the gradient
        metadata={"help": "LoRA rank of a new adapter (one continued from the served adapter keeps its own)."},
    )
    lora_alpha: int = field(
        default=32,  # alpha = 2r, the usual scaling
        metadata={"help": "LoRA alpha (the update is scaled by alpha / r)."},
    )
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],  # as PPO: attention, Llama-style names
        metadata={"help": "Module names that get LoRA adapters."},
    )
    seed: int = field(
        default=0,  # any fixed value: it makes LoRA init, sampling and the prompt order repeatable
        metadata={"help": "Seed for LoRA initialisation, sampling and the prompt order."},
    )
    packed_weights: bool = field(
        default=True,  # as PPO: sampling and the reference pass are faster on the CPU (align/packed.py)
        metadata={"help": "On the CPU, run the frozen base model's linear layers on weights packed once for "
                          "oneDNN. No effect on a GPU."},
    )

    def __post_init__(self) -> None:
        if self.k < 2:
            raise RLOOConfigError(f"--rloo-k is {self.k}; a leave-one-out baseline needs at least 2 answers per "
                                  f"prompt.")
        if self.total_episodes < self.episodes_per_step:
            raise RLOOConfigError(f"--rloo-total-episodes ({self.total_episodes}) is less than one step "
                                  f"(prompts_per_step {self.prompts_per_step} x k {self.k}).")

    @property
    def episodes_per_step(self) -> int:
        return self.prompts_per_step * self.k

    def sampling(self) -> PPOConfig:
        """PPO's config carrying what align.rollout.generate_rollouts reads."""
        return PPOConfig(max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=1.0,
                         batch_size=1, mini_batch_size=1, total_episodes=1)


def leave_one_out_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """rewards [P * k], the k answers of a prompt next to each other -> reward minus the mean of the other
    k - 1 answers' rewards [P * k]."""
    grouped = rewards.view(-1, k)  # [P, k]
    baseline = (grouped.sum(dim=1, keepdim=True) - grouped) / (k - 1)  # [P, k]
    return (grouped - baseline).reshape(-1)


def reinforce_loss(logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """-advantage * log p(answer), summed over the answers: logprobs [b, T], advantages [b], mask [b, T]."""
    return -(advantages.detach() * (logprobs * mask).sum(dim=1)).sum()


class RLOOTrainer:
    """Owns one RLOO run on a PEFT policy (whose KL reference is itself with the adapter off): the optimizer,
    the prompt order and the per-step stats. The caller saves the adapter (`model.save_pretrained`)."""

    def __init__(self, *, model: PeftModel, tokenizer: Any, score: ScoreTexts, cfg: RLOOConfig,
                 on_step: StepCallback | None = None, should_stop: Callable[[], bool] | None = None) -> None:
        torch.manual_seed(cfg.seed)
        self.model, self.tokenizer, self.score, self.cfg = model, tokenizer, score, cfg
        self.on_step, self.should_stop = on_step, should_stop or (lambda: False)
        self.model.eval()  # no dropout: the log-probs trained on are those of the distribution sampled
        # forward_logprobs_values also reads a value head; RLOO has none, so a zero one's output is dropped.
        self.no_values = build_value_head(model.config.get_text_config().hidden_size).to(model.device)
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.trainable, lr=cfg.learning_rate)
        self.shuffle = torch.Generator().manual_seed(cfg.seed)
        self.kl_guard = KLGuard(self.trainable, cfg.max_kl, "RLOO")
        self.stop_reason: str | None = None  # set when the KL guard ended the run
        self.stats: list[dict[str, float]] = []

    def train(self, prompts: Sequence[Prompt]) -> list[dict[str, float]]:
        """Run total_episodes // (prompts_per_step * k) steps over the prompts (chat messages or token ids),
        or fewer when should_stop() says so between steps."""
        cfg = self.cfg
        by_ids = {tuple(ids): p for ids, p in zip(encode_prompts(prompts, self.tokenizer), prompts)}
        prompt_ids = fitting_prompts(list(map(list, by_ids)), cfg.max_prompt_tokens, at_least=cfg.prompts_per_step)
        n_steps = cfg.total_episodes // cfg.episodes_per_step
        with packed_frozen_linears(self.model, enabled=cfg.packed_weights):
            for batch in prompt_batches(prompt_ids, cfg.prompts_per_step, n_steps, self.shuffle):
                self.kl_guard.before_step()
                self.stats.append(self.step(batch, [by_ids[tuple(ids)] for ids in batch]))
                self.stop_reason = self.kl_guard.after_step(self.stats[-1]["kl"])
                if self.on_step is not None:
                    self.on_step(len(self.stats), self.stats[-1])
                if self.stop_reason is not None or self.should_stop():
                    break
        return self.stats

    def step(self, prompt_ids: list[list[int]], prompts: list[Prompt]) -> dict[str, float]:
        """Sample k answers to each prompt, reward them, take one REINFORCE step; returns the step's stats."""
        cfg, k = self.cfg, self.cfg.k
        t0 = time.perf_counter()
        rollout = generate_rollouts(self.model, self.tokenizer, [ids for ids in prompt_ids for _ in range(k)],
                                    cfg.sampling())
        t1 = time.perf_counter()
        answers = self.tokenizer.batch_decode(rollout.responses(), skip_special_tokens=True)
        device = rollout.response_ids.device
        scores = torch.tensor([float(s) for s in self.score([p for p in prompts for _ in range(k)], answers)],
                              device=device)  # [B]
        mask, start = rollout.response_mask, rollout.query_ids.shape[1]
        ref = reference_logprobs(self.model, rollout.input_ids, rollout.attention_mask, start,
                                 temperature=cfg.temperature)
        kl, mean_kl = kl_estimate(rollout.logprobs, ref, mask)  # [B], []
        rewards = scores - cfg.missing_eos_penalty * (~rollout.ended_with_eos).float() - cfg.kl_coef * kl  # [B]
        advantages = leave_one_out_advantages(rewards, k)  # [B]
        t2 = time.perf_counter()
        loss = self.update(rollout, advantages)
        return {"reward": scores.mean().item(), "kl": mean_kl.item(), "rloo_reward": rewards.mean().item(),
                "advantage_std": advantages.std().item(), "loss": loss,
                "entropy": masked_mean(rollout.entropy, mask).item(),
                "answer_length": mask.sum(dim=1).float().mean().item(),
                "eos_fraction": rollout.ended_with_eos.float().mean().item(),
                "rollout_s": t1 - t0, "score_s": t2 - t1, "update_s": time.perf_counter() - t2}

    def update(self, rollout, advantages: torch.Tensor) -> float:
        """One optimizer step on the mean REINFORCE loss of every answer, summed over minibatches."""
        size = advantages.shape[0]
        self.optimizer.zero_grad()
        total = 0.0
        for index in torch.arange(size, device=advantages.device).split(self.cfg.mini_batch_size):
            logprobs, _, _ = forward_logprobs_values(
                self.model, self.no_values, rollout.input_ids[index], rollout.attention_mask[index],
                rollout.query_ids.shape[1], temperature=self.cfg.temperature, with_entropy=False)
            loss = reinforce_loss(logprobs, advantages[index], rollout.response_mask[index]) / size
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(self.trainable, self.cfg.max_grad_norm)
        self.optimizer.step()
        return total
