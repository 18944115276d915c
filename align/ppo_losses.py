"""PPO's arithmetic, each step a small function testable alone: masked statistics (over every rank's
tokens), per-token rewards with the KL penalty towards the base model, GAE advantages, the clipped
policy and value losses, entropy, and the controllers that move the KL coefficient (beta). Tensors in,
tensors out: no model and no sampling here (align.rollout), no training loop (align.ppo).

Shapes as in align.ppo: B = episodes in the batch, T = answer length (right-padded); "mask" is 1 for a
real answer token and 0 for padding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from align.distributed import ONE_PROCESS, Ranks

if TYPE_CHECKING:
    from align.ppo import PPOConfig


# ---------------------------------------------------------------- masked statistics


def masked_mean(
    x: torch.Tensor, mask: torch.Tensor, dim: int | None = None, *, ranks: Ranks = ONE_PROCESS
) -> torch.Tensor:
    """Mean of x over positions where mask is 1 (over all positions, or along `dim`). Over all
    positions, `ranks` makes it the mean over every rank's positions."""
    if dim is None:
        return ranks.sum((x * mask).sum()) / ranks.sum(mask.sum())
    return (x * mask).sum(dim) / mask.sum(dim)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True, *, ranks: Ranks = ONE_PROCESS
               ) -> torch.Tensor:
    """Variance of x over positions where mask is 1 (on every rank); Bessel-corrected when `unbiased`."""
    count = ranks.sum(mask.sum())
    if count < 2:
        raise ValueError(f"masked_var needs at least 2 unmasked values, got {int(count)}.")
    variance = masked_mean((x - masked_mean(x, mask, ranks=ranks)) ** 2, mask, ranks=ranks)
    if unbiased:
        variance = variance * count / (count - 1)
    return variance


def masked_whiten(
    x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, *, ranks: Ranks = ONE_PROCESS
) -> torch.Tensor:
    """x scaled to unit variance (and zero mean if `shift_mean`) over the unmasked positions of every rank
    (each rank's share of the batch is whitened with the whole batch's mean and variance); padding -> 0."""
    mean, var = masked_mean(x, mask, ranks=ranks), masked_var(x, mask, ranks=ranks)
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask  # zero padding so nothing downstream can pick it up


# ---------------------------------------------------------------- rewards, KL and advantages


def compute_rewards(
    scores: torch.Tensor,  # [B]
    logprobs: torch.Tensor,  # [B, T]
    ref_logprobs: torch.Tensor,  # [B, T]
    mask: torch.Tensor,  # [B, T]
    kl_coef: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards -beta*(logp - ref_logp), plus the episode's score on its last real token."""
    kl = (logprobs - ref_logprobs) * mask  # [B, T]
    rewards = -kl_coef * kl  # [B, T]
    positions = torch.arange(mask.shape[1], device=mask.device)  # [T]
    last = (positions * mask).argmax(dim=1)  # [B] index of the last real token
    rewards[torch.arange(mask.shape[0], device=mask.device), last] += scores
    return rewards, kl


def kl_estimate(
    logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """k1 estimate of KL(policy || reference): per answer (summed over its tokens) [B], and its batch mean []."""
    per_answer = ((logprobs - ref_logprobs) * mask).sum(dim=1)  # [B]
    return per_answer, per_answer.mean()


def compute_advantages(
    values: torch.Tensor,  # [B, T]
    rewards: torch.Tensor,  # [B, T]
    mask: torch.Tensor,  # [B, T]
    gamma: float,
    lam: float,
    *,
    ranks: Ranks = ONE_PROCESS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE advantages (whitened over the real tokens of every rank) and returns (raw advantages + values),
    both [B, T]."""
    values, rewards = values * mask, rewards * mask  # padding carries neither value nor reward
    T = values.shape[1]
    running = torch.zeros_like(values[:, 0])  # [B] GAE of the position after t
    advantages = torch.zeros_like(values)  # [B, T]
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(running)  # [B]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        # Multiplying by the mask resets the recursion on padding, so it never leaks into real tokens.
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
    returns = advantages + values
    return masked_whiten(advantages, mask, ranks=ranks), returns


# ---------------------------------------------------------------- losses


def policy_loss(
    logprobs: torch.Tensor,  # [B, T] under the policy being trained
    old_logprobs: torch.Tensor,  # [B, T] at rollout time
    advantages: torch.Tensor,  # [B, T]
    mask: torch.Tensor,  # [B, T]
    clip_range: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clipped surrogate loss, the fraction of tokens where clipping won, and 0.5*E[(log ratio)^2]."""
    log_ratio = logprobs - old_logprobs  # [B, T]
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).float(), mask)
    approx_kl = 0.5 * masked_mean(log_ratio**2, mask)
    return loss, clipfrac, approx_kl


def value_loss(
    values: torch.Tensor,  # [B, T] from the value head being trained
    old_values: torch.Tensor,  # [B, T] at rollout time
    returns: torch.Tensor,  # [B, T]
    mask: torch.Tensor,  # [B, T]
    clip_range_value: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """0.5 * max(unclipped, clipped) squared error, and the fraction of tokens where the clipped one won."""
    clipped_values = old_values + torch.clamp(values - old_values, -clip_range_value, clip_range_value)
    unclipped_error = (values - returns) ** 2  # [B, T]
    clipped_error = (clipped_values - returns) ** 2  # [B, T]
    loss = 0.5 * masked_mean(torch.maximum(unclipped_error, clipped_error), mask)
    clipfrac = masked_mean((clipped_error > unclipped_error).float(), mask)
    return loss, clipfrac


def entropy_from_logits(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Entropy of each token's distribution, [B, T, V] -> [B, T], zero on padding."""
    probs = torch.softmax(logits, dim=-1)
    entropy = torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)
    return entropy * mask


# ---------------------------------------------------------------- KL controllers


class AdaptiveKLController:
    """Beta that tracks a target KL (Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences"),
    never below its starting value: every run starts at KL 0, below any target, so a symmetric controller
    would first loosen the penalty for no reason but the start; in a round of ~40 steps it then lacked the
    steps to tighten it again once the policy ran past the target (issue 15: KL 22 at beta 0.05)."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int) -> None:
        self.value = init_kl_coef
        self.floor = init_kl_coef
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        # The error is clipped so one noisy batch moves beta by at most 20% * n_steps / horizon.
        proportional_error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value = max(self.floor, self.value * (1.0 + proportional_error * n_steps / self.horizon))


class FixedKLController:
    """A beta that never changes."""

    def __init__(self, kl_coef: float) -> None:
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        pass


def kl_controller_for(cfg: PPOConfig) -> AdaptiveKLController | FixedKLController:
    if cfg.adaptive_kl:
        return AdaptiveKLController(cfg.init_kl_coef, cfg.target_kl, cfg.kl_horizon)
    return FixedKLController(cfg.init_kl_coef)
