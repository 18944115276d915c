"""PPO for RLHF: improve a LoRA adapter on a causal LM against a score function (the reward model).

One step (`ppo_step`) samples answers to a batch of prompts, scores them, turns each score into per-token
rewards with a KL penalty towards the base model, estimates advantages with GAE, and runs a few epochs of
clipped PPO on minibatches. The policy is the base model plus a trainable LoRA adapter; the KL reference is
the same model with the adapter switched off, so the weights are held in memory only once. A small linear
value head reads the policy's last hidden states, so one forward pass gives both log-probs and values.

Shapes: B = episodes in the batch, Q = prompt length (left-padded), T = answer length (right-padded),
V = vocabulary, H = hidden size. "Mask" always means 1 for a real answer token and 0 for padding.

This module owns the config, one step (`ppo_step`: score, update, move beta) and the trainer (`PPOTrainer`:
the run, building the policy and value head, saving). Its arithmetic (rewards, advantages, losses, KL
controllers) is in align.ppo_losses; sampling and the forward passes, shared with RLOO and evaluation,
are in align.rollout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from align.distributed import ONE_PROCESS, Ranks
from align.packed import packed_frozen_linears
from align.ppo_losses import (AdaptiveKLController, FixedKLController, compute_advantages, compute_rewards,
                              kl_controller_for, kl_estimate, masked_mean, masked_whiten, policy_loss, value_loss)
from align.rollout import (Prompt, Rollout, RolloutGenerator, encode_prompts, fitting_prompts, forward_logprobs_values,
                           generate_rollouts, model_device, reference_logprobs)
from storage.adapters import VALUE_HEAD_FILE  # saved next to the adapter: one directory holds a whole checkpoint

ScoreFn = Callable[[list[list[int]], list[list[int]]], torch.Tensor]  # (queries, responses) -> scores [B]
StepCallback = Callable[[int, dict[str, float]], None]  # (steps done so far, that step's stats)


class PPOConfigError(ValueError):
    """A PPOConfig whose values cannot work together."""


@dataclass
class PPOConfig:
    learning_rate: float = field(
        default=2e-4,  # at 3e-5 a round moved the policy 0.03 nats and learned nothing (issue 15). A round's steps
        # depend on the machine: on a 2-core machine ~1.4x slower than the first, 1e-4 got 17 steps and +12.5 points
        # on a ranked-for property, 2e-4 +35.9 in as many; the KL guard (max_kl) stops what overshoots (BENCHMARKS.md)
        metadata={"help": "AdamW learning rate for the LoRA weights and the value head."},
    )
    batch_size: int = field(
        default=16,  # episodes sampled together: a decode step reads every weight once for the whole batch, so on
        # 2 cores a token cost 11.4-12.1 ms of CPU at 16 (merged) against 16.4-19.4 at 8 (the old default, through
        # PEFT's layers), and 11.4-11.6 at 32: hardly less, the matmuls are compute-bound there, while 16
        # refreshes the policy twice as often (bench/results/rollout_speed.json). Wall time at load ~2: 41-53
        # decoded tok/s before (8, PEFT's layers), 97-107 after (16, merged; rollout_speed_quieter.json)
        metadata={"help": "Episodes (prompt + sampled answer) per rollout batch, i.e. per PPO step."},
    )
    mini_batch_size: int = field(
        default=4,  # four gradient steps per epoch with the default batch_size: 96 in the 192 episodes that learned
        # in issue 15, as many as the 8/4 split did there
        metadata={"help": "Episodes per gradient step; must divide batch_size."},
    )
    epochs: int = field(
        default=2,  # more epochs reuse samples further off-policy and clip more
        metadata={"help": "Passes over each rollout batch."},
    )
    max_prompt_tokens: int = field(
        default=128,  # over half of real chat prompts (HH: median 115 tokens, p90 285); a batch costs its longest prompt
        metadata={"help": "Train only on prompts of at most this many tokens (chat template included), so a "
                          "few long conversations do not set the cost of every batch; 0 = no limit. If too "
                          "few fit, the shortest others fill one batch."},
    )
    max_new_tokens: int = field(
        default=64,  # HH-harmless answers: median 30 tokens, served ones run to 256; the reward model reads 64-token
        # answers whole, and a step of 16 rollouts costs ~27 s here (160 tokens: ~60 s, under half the steps)
        metadata={"help": "Longest sampled answer, in tokens."},
    )
    temperature: float = field(
        default=1.0,  # sample from the policy itself; the log-probs we train on use the same temperature
        metadata={"help": "Sampling temperature for rollouts (log-probs are computed at the same temperature)."},
    )
    top_p: float = field(
        default=1.0,  # any truncation makes sampled tokens off-policy for the log-probs we optimise
        metadata={"help": "Nucleus sampling threshold for rollouts; 1.0 disables it."},
    )
    clip_range: float = field(
        default=0.2,  # Schulman et al. 2017
        metadata={"help": "PPO clip range for the probability ratio."},
    )
    clip_range_value: float = field(
        default=0.2,  # same scale as the scores the reward model gives
        metadata={"help": "Clip range for the value prediction around its rollout-time value."},
    )
    vf_coef: float = field(
        default=0.1,  # the value loss shares the LoRA trunk; keep it from dominating the policy gradient
        metadata={"help": "Weight of the value loss in the total loss."},
    )
    gamma: float = field(
        default=1.0,  # one score per episode at its end: no reason to discount within an answer
        metadata={"help": "Discount factor for GAE."},
    )
    lam: float = field(
        default=0.95,  # standard GAE bias/variance trade-off
        metadata={"help": "GAE lambda."},
    )
    init_kl_coef: float = field(
        default=0.05,  # Ziegler et al. 2019 / TRL's default starting beta
        metadata={"help": "Initial KL penalty coefficient beta."},
    )
    adaptive_kl: bool = field(
        default=True,  # a fixed beta either lets the KL explode or stalls learning depending on the task
        metadata={"help": "Adapt beta towards target_kl (Ziegler et al. 2019); otherwise keep it fixed."},
    )
    target_kl: float = field(
        default=6.0,  # nats per answer, as in Ziegler et al. 2019 and TRL
        metadata={"help": "KL (nats per answer, summed over tokens) that the adaptive controller aims for."},
    )
    kl_horizon: int = field(
        default=32,  # a round runs ~40 steps of 16 episodes. At Ziegler et al.'s 10000 (for runs of ~100 steps
        # of 512+ episodes) beta moved 0.03 % per step here, i.e. never: KL ran 6 -> 22 nats in 22 steps at beta
        # 0.05 (issue 15, asks_back). At 32 it can grow ~10 % per step over target: x7 in 20 steps
        metadata={"help": "Horizon (episodes) of the adaptive KL controller: beta changes by up to a fifth per "
                          "horizon, clipped error times episodes / horizon per step."},
    )
    max_kl: float = field(
        default=8.0,  # below the gate's 10-nat limit (loop.gate.GateConfig.max_kl): a candidate past it is
        # rejected whatever it learned, so training on past it spends the round on a certain rejection
        metadata={"help": "Stop when a batch's KL to the base model (nats per answer) exceeds this, and keep "
                          "the weights of the last batch within it; 0 = no limit."},
    )
    whiten_rewards: bool = field(
        default=False,  # scores from one reward model are already on one scale
        metadata={"help": "Whiten per-token rewards (without shifting their mean) before GAE."},
    )
    missing_eos_penalty: float = field(
        default=0.0,  # as TRL's default (None). Rollouts stop at 64 tokens while served answers run to 256, so a
        # penalty for not ending taught every round to end early: at 1.0, `however` +18.8 points with answers
        # 170 -> 63.5 words; at 0, +43.8 with 172.5 -> 196.5 (BENCHMARKS.md "No penalty for answers that go on")
        metadata={"help": "Subtracted from the score of answers that never emitted EOS within max_new_tokens."},
    )
    lora_r: int = field(
        default=16,  # enough capacity for style changes on a ~100M model, small to save
        metadata={"help": "LoRA rank."},
    )
    lora_alpha: int = field(
        default=32,  # alpha = 2r, the usual scaling
        metadata={"help": "LoRA alpha (the update is scaled by alpha / r)."},
    )
    lora_dropout: float = field(
        default=0.0,  # dropout would make the new/old probability ratio noisy even before any update
        metadata={"help": "LoRA dropout."},
    )
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],  # attention only: Llama-style names
        metadata={"help": "Module names that get LoRA adapters."},
    )
    total_episodes: int = field(
        default=1024,  # 64 steps of 16, a ceiling: a round is now ended by its time budget (RoundConfig.time_budget_s;
        # at 192 episodes, 12 steps, a round on 100 prompts finished in 7.3 of its 15 minutes and PPO learned too
        # little), so this only bounds a round run without one (--time-budget-s 0)
        metadata={"help": "Most episodes to train on; the run does at most total_episodes // batch_size steps, "
                          "fewer when the round's time budget (--time-budget-s, --policy-budget-s) ends it first."},
    )
    seed: int = field(
        default=0,  # any fixed value: it makes LoRA init, sampling and shuffles repeatable
        metadata={"help": "Seed for LoRA initialisation, sampling and minibatch shuffles."},
    )
    max_grad_norm: float = field(
        default=1.0,  # one bad minibatch must not wreck the adapter
        metadata={"help": "Gradient norm clipping threshold."},
    )
    merged_sampling: bool = field(
        default=True,  # CPU per decoded token, 2 runs: batch 16 11.4-12.1 ms merged vs 12.7-13.5 through PEFT's
        # layers, batch 8 13.6-15.1 vs 16.4-19.4 (bench/results/rollout_speed.json); log-probs agree within 1e-5
        metadata={"help": "Sample rollouts with each LoRA merged into a copy of its layer's weight (one matmul "
                          "per layer instead of three, for one more copy of the adapted weights); training and "
                          "the reference pass still run the adapter as is. Off: sample through PEFT's layers."},
    )
    packed_weights: bool = field(
        default=True,  # sampling 1.24x, reference pass 1.3x faster on 2 cores (align/packed.py)
        metadata={"help": "On the CPU, run the frozen base model's linear layers on weights packed once for "
                          "oneDNN: faster, for one more copy of those weights in memory. No effect on a GPU."},
    )

    def __post_init__(self) -> None:
        _check_batch_sizes(self)


def _check_shares(cfg: PPOConfig, ranks: Ranks) -> None:
    """Every rank must get an equal share of each batch and of each minibatch."""
    if cfg.batch_size % ranks.world_size or cfg.mini_batch_size % ranks.world_size:
        raise PPOConfigError(
            f"batch_size ({cfg.batch_size}) and mini_batch_size ({cfg.mini_batch_size}) must both be multiples "
            f"of the number of training processes ({ranks.world_size}): each rolls out an equal share."
        )


def _check_batch_sizes(cfg: PPOConfig) -> None:
    if cfg.mini_batch_size <= 0 or cfg.batch_size % cfg.mini_batch_size != 0:
        raise PPOConfigError(
            f"mini_batch_size ({cfg.mini_batch_size}) must be positive and divide batch_size ({cfg.batch_size})."
        )
    if cfg.total_episodes < cfg.batch_size:
        raise PPOConfigError(f"total_episodes ({cfg.total_episodes}) is less than one batch ({cfg.batch_size}).")


# ---------------------------------------------------------------- one PPO step


@dataclass
class ScoredRollout:
    """A rollout with everything PPO needs from rollout time, all [B, T] unless noted."""

    rollout: Rollout
    scores: torch.Tensor  # [B] from score_fn, before the missing-EOS penalty
    logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    values: torch.Tensor
    entropy: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor


def score_rollout(score_fn: ScoreFn, rollout: Rollout, cfg: PPOConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(raw scores [B], scores after subtracting the missing-EOS penalty [B])."""
    scores = torch.as_tensor(score_fn(rollout.queries(), rollout.responses()), dtype=torch.float32)
    scores = scores.to(rollout.response_ids.device)
    penalised = scores - cfg.missing_eos_penalty * (~rollout.ended_with_eos).float()
    return scores, penalised


@torch.no_grad()
def evaluate_rollout(
    *, model: PeftModel, value_head: nn.Module, rollout: Rollout, score_fn: ScoreFn, kl_coef: float, cfg: PPOConfig,
    ranks: Ranks = ONE_PROCESS,
) -> ScoredRollout:
    """Score a rollout, take its old/reference log-probs and values, and turn them into advantages
    (whitened with the statistics of every rank's rollout)."""
    scores, penalised = score_rollout(score_fn, rollout, cfg)
    start, mask = rollout.query_ids.shape[1], rollout.response_mask
    if rollout.logprobs is not None:  # kept by the sampling pass: same weights, same tokens
        logprobs, entropy = rollout.logprobs, rollout.entropy
        values = value_head(rollout.hidden.float()).squeeze(-1) * mask
    else:
        logprobs, values, entropy = forward_logprobs_values(
            model, value_head, rollout.input_ids, rollout.attention_mask, start, temperature=cfg.temperature
        )
    ref_logprobs = reference_logprobs(
        model, rollout.input_ids, rollout.attention_mask, start, temperature=cfg.temperature
    )
    rewards, _ = compute_rewards(penalised, logprobs, ref_logprobs, mask, kl_coef)  # [B, T]
    if cfg.whiten_rewards:
        rewards = masked_whiten(rewards, mask, shift_mean=False, ranks=ranks)
    advantages, returns = compute_advantages(values, rewards, mask, cfg.gamma, cfg.lam, ranks=ranks)
    return ScoredRollout(rollout, scores, logprobs, ref_logprobs, values, entropy, advantages, returns)


def train_minibatch(
    *,
    model: PeftModel,
    value_head: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: ScoredRollout,
    index: torch.Tensor,  # [b] rows of the batch in this minibatch
    cfg: PPOConfig,
    ranks: Ranks = ONE_PROCESS,
) -> dict[str, float]:
    """One gradient step of clipped policy + value loss on the rows `index` (with several ranks: on every
    rank's rows `index` of its own share, the gradients averaged, so every rank takes the same step)."""
    rollout = batch.rollout
    mask = rollout.response_mask[index]  # [b, T]
    logprobs, values, _ = forward_logprobs_values(
        model,
        value_head,
        rollout.input_ids[index],
        rollout.attention_mask[index],
        rollout.query_ids.shape[1],
        temperature=cfg.temperature,
        with_entropy=False,
    )
    pg_loss, pg_clipfrac, approx_kl = policy_loss(
        logprobs, batch.logprobs[index], batch.advantages[index], mask, cfg.clip_range
    )
    vf_loss, vf_clipfrac = value_loss(
        values, batch.values[index], batch.returns[index], mask, cfg.clip_range_value
    )
    loss = pg_loss + cfg.vf_coef * vf_loss
    optimizer.zero_grad()
    loss.backward()
    trainable = [p for group in optimizer.param_groups for p in group["params"]]
    ranks.average_gradients(trainable)  # before clipping: the norm is then the same on every rank
    torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
    optimizer.step()
    return {
        "policy_loss": pg_loss.item(),
        "value_loss": vf_loss.item(),
        "clipfrac": pg_clipfrac.item(),
        "value_clipfrac": vf_clipfrac.item(),
        "approx_kl": approx_kl.item(),
    }


def ppo_update(
    *,
    model: PeftModel,
    value_head: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: ScoredRollout,
    cfg: PPOConfig,
    shuffle: torch.Generator,
    ranks: Ranks = ONE_PROCESS,
) -> dict[str, float]:
    """`epochs` passes over shuffled minibatches; returns the minibatch stats averaged. mini_batch_size
    counts the episodes of all ranks together: each rank contributes its share of every minibatch."""
    size = batch.rollout.response_ids.shape[0]
    minibatch_stats = []
    for _ in range(cfg.epochs):
        # Drawn over the whole batch of all ranks: `shuffle` also orders the prompts, and must advance
        # as it does in one process for every rank to get the same prompt batches as one process would.
        order = ranks.own_rows(torch.randperm(size * ranks.world_size, generator=shuffle))
        order = order.to(batch.rollout.response_ids.device)
        for index in order.split(cfg.mini_batch_size // ranks.world_size):
            minibatch_stats.append(
                train_minibatch(
                    model=model, value_head=value_head, optimizer=optimizer, batch=batch, index=index, cfg=cfg,
                    ranks=ranks,
                )
            )
    return {key: sum(s[key] for s in minibatch_stats) / len(minibatch_stats) for key in minibatch_stats[0]}


def ppo_step(
    *,
    model: PeftModel,
    value_head: nn.Module,
    optimizer: torch.optim.Optimizer,
    kl_controller: AdaptiveKLController | FixedKLController,
    tokenizer: Any,
    prompt_ids: list[list[int]],
    score_fn: ScoreFn,
    cfg: PPOConfig,
    shuffle: torch.Generator,
    generator: RolloutGenerator = generate_rollouts,
    ranks: Ranks = ONE_PROCESS,
) -> dict[str, float]:
    """Sample, score and train on one batch of prompts; then move beta with the KL observed. Returns stats
    (with each phase's wall time, for throughput figures). With several ranks, `prompt_ids` is this rank's
    share of the batch; the stats and the KL that moves beta are averaged over the ranks, while the
    timings and decoded_tokens stay this rank's own (tokens per second per rank)."""
    t0 = time.perf_counter()
    rollout = generator(model, tokenizer, prompt_ids, cfg)
    t1 = time.perf_counter()
    beta = kl_controller.value  # the beta these rewards were computed with
    batch = evaluate_rollout(
        model=model, value_head=value_head, rollout=rollout, score_fn=score_fn, kl_coef=beta, cfg=cfg, ranks=ranks
    )
    t2 = time.perf_counter()
    update_stats = ppo_update(
        model=model, value_head=value_head, optimizer=optimizer, batch=batch, cfg=cfg, shuffle=shuffle, ranks=ranks
    )
    t3 = time.perf_counter()
    mask = rollout.response_mask
    _, mean_kl = kl_estimate(batch.logprobs, batch.ref_logprobs, mask)
    stats = ranks.mean_of({
        "reward": batch.scores.mean().item(),
        "kl": mean_kl.item(),
        "entropy": masked_mean(batch.entropy, mask).item(),
        "answer_length": mask.sum(dim=1).float().mean().item(),
        "eos_fraction": rollout.ended_with_eos.float().mean().item(),
        **update_stats,
    })
    kl_controller.update(stats["kl"], n_steps=len(prompt_ids) * ranks.world_size)
    return {
        **stats,
        "beta": beta,
        "decoded_tokens": float(rollout.input_ids.shape[0] * (rollout.input_ids.shape[1] - rollout.query_ids.shape[1])),
        "rollout_s": t1 - t0,
        "score_s": t2 - t1,  # reward model, policy/value/reference forward passes
        "update_s": t3 - t2,
    }


# ---------------------------------------------------------------- building, training, saving


def build_policy(base_model: nn.Module, cfg: PPOConfig, *, adapter_dir: str | Path | None = None) -> PeftModel:
    """The base model with a trainable LoRA: a fresh one, or the adapter in `adapter_dir` to continue from."""
    if adapter_dir is not None:
        return PeftModel.from_pretrained(base_model, str(adapter_dir), is_trainable=True)
    torch.manual_seed(cfg.seed)  # LoRA's A matrices start random
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(base_model, lora)


def build_value_head(hidden_size: int, *, path: str | Path | None = None) -> nn.Linear:
    """Linear [H] -> [1] value head; zero-initialised (every value starts at 0) unless loaded from `path`."""
    head = nn.Linear(hidden_size, 1)
    if path is not None:
        head.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    else:
        # Zero values at first: a random head would add noise to the first advantages for nothing.
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
    return head


def prompt_batches(
    prompt_ids: list[list[int]], batch_size: int, n_batches: int, shuffle: torch.Generator
) -> Iterator[list[list[int]]]:
    """`n_batches` batches cycling through the prompts, reshuffled on every pass."""
    queue: list[int] = []
    for _ in range(n_batches):
        while len(queue) < batch_size:
            queue.extend(torch.randperm(len(prompt_ids), generator=shuffle).tolist())
        batch, queue = queue[:batch_size], queue[batch_size:]
        yield [prompt_ids[i] for i in batch]


class KLGuard:
    """Keeps a policy run (PPO, RLOO) within `max_kl` of the base model: holds the trainable weights of the
    last batch whose KL (measured on that batch's own rollouts, i.e. of the weights that sampled it) stayed
    within the limit, and puts them back the first time a batch passes it. A limit of 0 holds nothing."""

    def __init__(self, params: list[nn.Parameter], max_kl: float, method: str) -> None:
        self.params, self.max_kl, self.method = params, max_kl, method
        self.pending: list[torch.Tensor] | None = None  # the weights about to sample the next batch
        self.within: list[torch.Tensor] | None = None  # the last weights whose batch stayed within the limit
        self.steps_within = 0

    def before_step(self) -> None:
        if self.max_kl > 0:
            self.pending = [p.detach().clone() for p in self.params]

    def after_step(self, kl: float) -> str | None:
        """After a step on a batch whose KL was `kl`: None while within the limit; past it, the weights go
        back to the last ones within it (or, when no batch was, to those that sampled this one) and the
        sentence that says so is returned: the run must end."""
        if self.max_kl <= 0 or kl <= self.max_kl:
            self.within, self.steps_within = self.pending, self.steps_within + 1
            return None
        kept = self.within if self.within is not None else self.pending
        with torch.no_grad():
            for param, saved in zip(self.params, kept):
                param.copy_(saved)
        return (f"{self.method} stopped after step {self.steps_within + 1}: its batch's KL to the base model, "
                f"{kl:.2f} nats, passed max_kl {self.max_kl:.2f}; kept the weights that sampled step "
                f"{max(self.steps_within, 1)}'s batch.")


class PPOTrainer:
    """Owns one PPO run: the LoRA policy (whose reference is itself with the adapter off), the value head, the
    optimizer, the KL controller and the list of per-step stats. `save(dir)` writes the adapter files
    (adapter_config.json, adapter_model.safetensors) and value_head.pt into `dir`.

    Under `accelerate launch` / torchrun, pass `ranks` (align.distributed.start_ranks): every rank builds the
    same trainer and calls `train` with the same prompts; each rolls out its own batch_size / world_size
    episodes of every batch, and gradients and statistics are averaged over the ranks, so all of them keep
    identical weights. batch_size and mini_batch_size count the episodes of all ranks together."""

    def __init__(
        self,
        *,
        model: PeftModel,
        tokenizer: Any,
        score_fn: ScoreFn,
        cfg: PPOConfig,
        value_head: nn.Module | None = None,
        generator: RolloutGenerator = generate_rollouts,
        on_step: StepCallback | None = None,
        ranks: Ranks = ONE_PROCESS,
    ) -> None:
        _check_shares(cfg, ranks)
        torch.manual_seed(cfg.seed)
        self.model, self.tokenizer, self.score_fn, self.cfg = model, tokenizer, score_fn, cfg
        self.generator, self.on_step, self.ranks = generator, on_step, ranks
        hidden_size = model.config.get_text_config().hidden_size
        if value_head is None:
            value_head = build_value_head(hidden_size)
        self.value_head = value_head.to(model_device(model))
        # Dropout stays off throughout: with it on, the new/old ratio would differ from 1 before any update.
        self.model.eval()
        trainable = [p for p in model.parameters() if p.requires_grad] + list(self.value_head.parameters())
        ranks.broadcast_parameters(trainable)  # every rank starts from rank 0's weights
        self.optimizer = torch.optim.AdamW(trainable, lr=cfg.learning_rate)
        self.kl_controller = kl_controller_for(cfg)
        self.kl_guard = KLGuard(trainable, cfg.max_kl, "PPO")
        self.stop_reason: str | None = None  # set when the KL guard ended the run
        self.shuffle = torch.Generator().manual_seed(cfg.seed)  # minibatch and prompt order, apart from sampling
        self.stats: list[dict[str, float]] = []

    def step(self, prompt_ids: list[list[int]]) -> dict[str, float]:
        """One PPO step on a batch of prompts; with several ranks every rank passes the same batch and
        rolls out its own share of it. When the batch's KL passes cfg.max_kl, the weights go back to those of
        the last batch within it and `stop_reason` says so; `train` then ends."""
        self.kl_guard.before_step()
        stats = ppo_step(
            model=self.model,
            value_head=self.value_head,
            optimizer=self.optimizer,
            kl_controller=self.kl_controller,
            tokenizer=self.tokenizer,
            prompt_ids=self.ranks.shard(prompt_ids),
            score_fn=self.score_fn,
            cfg=self.cfg,
            shuffle=self.shuffle,
            generator=self.generator,
            ranks=self.ranks,
        )
        self.stop_reason = self.kl_guard.after_step(stats["kl"])
        self.stats.append(stats)
        if self.on_step is not None:
            self.on_step(len(self.stats), stats)
        return stats

    def train(self, prompts: Sequence[Prompt]) -> list[dict[str, float]]:
        """Run total_episodes // batch_size steps over the prompts (token ids or chat messages)."""
        prompt_ids = fitting_prompts(encode_prompts(prompts, self.tokenizer), self.cfg.max_prompt_tokens,
                                     at_least=self.cfg.batch_size)
        n_steps = self.cfg.total_episodes // self.cfg.batch_size
        # generate samples from the global generator; each rank draws its own samples
        torch.manual_seed(self.cfg.seed + self.ranks.rank)
        with packed_frozen_linears(self.model, enabled=self.cfg.packed_weights):
            for batch in prompt_batches(prompt_ids, self.cfg.batch_size, n_steps, self.shuffle):
                self.step(batch)
                if self.stop_reason is not None:
                    break
        return self.stats

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        self.model.save_pretrained(str(directory))
        torch.save(self.value_head.state_dict(), directory / VALUE_HEAD_FILE)
        return directory
