"""The policy stage of a round, behind one interface: what it is given (`PolicyInputs`), what it returns
(`PolicyResult`), and the methods a round can use (`POLICY_STAGES`, chosen with --policy):

    ppo   PPO against the reward model (align.ppo), with a value head; the default
    rloo  RLOO against the reward model (align.rloo): k answers per prompt, leave-one-out baseline
    dpo   DPO on the preference pairs (align.direct, TRL's DPOTrainer); samples nothing
    kto   KTO on thumbs, and on the pairs' answers labelled by their wins (align.direct, TRL's KTOTrainer)

Every stage starts from the base model with a fresh LoRA or from the adapter it is given, saves the trained
adapter into out_dir (adapter_config.json, adapter_model.safetensors) and returns the policy in memory, so
the round evaluates every method the same way. Each method's config has its own flags, --<method>-<field>
(align.stage_configs registers them).
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from align.direct import DPOConfig, KTOConfig, kto_examples, remove_reference_adapter, train_dpo, train_kto
from align.distributed import ONE_PROCESS, Ranks
from align.packed import packed_frozen_linears
from align.ppo import PPOConfig, PPOTrainer, build_policy
from align.rollout import encode_prompts
from align.rloo import RLOOConfig, RLOOTrainer


class PolicyError(ValueError):
    """A policy stage that cannot run on what it was given; the message says why."""


class Scorer(Protocol):
    """The reward model as the policy stages use it (align.reward.RewardScorer)."""

    def score(self, prompts: list[list[dict]], answers: list[str]) -> Sequence[float]: ...


def _silent(line: str, *, quiet: bool = False, stats: dict | None = None) -> None:
    """The default progress: nothing."""


@dataclass
class PolicyInputs:
    """What a policy stage may use. Stages read the parts their method needs: PPO and RLOO sample answers to
    `train_prompts` and score them with `scorer`; DPO reads `pairs`, KTO `thumbs` (and `pairs`)."""

    base_path: str  # the base model's directory (weights and tokenizer)
    start_adapter: str | None  # the adapter to continue from (the SFT stage's, or the served one); None: fresh
    scorer: Scorer  # scorer.score(prompts, answers) -> one reward per answer
    train_prompts: list[list[dict]]  # chat messages, the held-out prompts already left out
    pairs: list[dict]  # storage.export.preference_pairs rows: prompt / chosen / rejected
    thumbs: list[dict]  # storage.export.kto_rows rows: prompt / completion / label
    out_dir: Path  # where the trained adapter's files go
    # wall time the stage may train; it stops before a step that would pass it (0 or less: after its first step)
    budget_s: float | None = None
    ranks: Ranks = ONE_PROCESS
    # progress(line, quiet=False, stats=None): quiet lines are per-step detail, `stats` their numbers (the
    # admin tab draws the curves from them while the round runs)
    progress: Callable[..., None] = _silent


@dataclass
class PolicyResult:
    """A trained policy: the PEFT model in memory (its active adapter is the new one), its tokenizer, the
    directory the adapter was saved in (on rank 0; other ranks save nothing), and the method's metrics:
    {"method": ..., "steps": [per-step stats], ...}."""

    policy: Any
    tokenizer: Any
    adapter_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)


class PolicyStage(Protocol):
    """One way to train the policy adapter. `config` is its config dataclass (flags --<name>-<field>)."""

    name: str
    config: type

    def check(self, inputs: PolicyInputs, cfg: Any) -> None:
        """Raise PolicyError with a sentence if the stage cannot run on these inputs (before models load)."""

    def train(self, inputs: PolicyInputs, cfg: Any) -> PolicyResult: ...


class PPOStage:
    """PPO with a value head against the reward model: align.ppo.PPOTrainer, as rounds always ran it."""

    name, config = "ppo", PPOConfig

    def check(self, inputs: PolicyInputs, cfg: PPOConfig) -> None:
        """PPO runs on any number of ranks (it checks its own batch shares)."""

    def train(self, inputs: PolicyInputs, cfg: PPOConfig) -> PolicyResult:
        from tqdm import tqdm

        tokenizer, policy = load_policy(inputs, cfg)
        ranks = inputs.ranks
        ceiling = cfg.total_episodes // cfg.batch_size
        bar = tqdm(total=ceiling, desc="PPO", unit="step", disable=not ranks.is_main)
        out_of_time, began = Deadline(inputs.budget_s, ranks), time.monotonic()

        def on_step(step, stats):
            bar.total = expected_steps(step, time.monotonic() - began, out_of_time.left_s(), ceiling)
            bar.update(1)
            bar.set_postfix(reward=f"{stats['reward']:.3f}", kl=f"{stats['kl']:.3f}", beta=f"{stats['beta']:.3f}")
            inputs.progress(f"PPO step {bar.n}/{bar.total}: reward {stats['reward']:.3f}, KL {stats['kl']:.3f}, "
                            f"beta {stats['beta']:.3f}", quiet=True, stats=stats)
            if out_of_time():
                raise _OutOfTime

        trainer = PPOTrainer(model=policy, tokenizer=tokenizer, score_fn=token_score_fn(inputs.scorer, tokenizer,
                                                                                          inputs.train_prompts),
                             cfg=cfg, on_step=on_step, ranks=ranks)
        # The reward model scores every rollout: its frozen weights are packed as the policy's are
        # (PPOTrainer.train packs those itself).
        with packed_scorer(inputs.scorer, enabled=cfg.packed_weights), contextlib.suppress(_OutOfTime):
            trainer.train(inputs.train_prompts)
        bar.close()
        if trainer.stop_reason is not None:
            inputs.progress(trainer.stop_reason)
        if ranks.is_main:  # every rank holds the same weights
            trainer.save(inputs.out_dir)
        return PolicyResult(policy, tokenizer, inputs.out_dir,
                            {"method": self.name, "steps": trainer.stats, "stop_reason": trainer.stop_reason})


class RLOOStage:
    """RLOO against the reward model (align.rloo): k answers per prompt, no value head."""

    name, config = "rloo", RLOOConfig

    def check(self, inputs: PolicyInputs, cfg: RLOOConfig) -> None:
        _check_one_process(self.name, inputs.ranks)

    def train(self, inputs: PolicyInputs, cfg: RLOOConfig) -> PolicyResult:
        tokenizer, policy = load_policy(inputs, cfg)
        n_steps = cfg.total_episodes // cfg.episodes_per_step

        def on_step(step, stats):
            inputs.progress(f"RLOO step {step}/{n_steps}: reward {stats['reward']:.3f}, KL {stats['kl']:.3f}",
                            quiet=True, stats=stats)

        trainer = RLOOTrainer(model=policy, tokenizer=tokenizer, score=inputs.scorer.score, cfg=cfg,
                              on_step=on_step, should_stop=Deadline(inputs.budget_s, inputs.ranks))
        with packed_scorer(inputs.scorer, enabled=cfg.packed_weights):
            stats = trainer.train(inputs.train_prompts)
        if trainer.stop_reason is not None:
            inputs.progress(trainer.stop_reason)
        policy.save_pretrained(str(inputs.out_dir))
        return PolicyResult(policy, tokenizer, inputs.out_dir,
                            {"method": self.name, "steps": stats, "stop_reason": trainer.stop_reason})


class DPOStage:
    """DPO on the preference pairs through TRL's DPOTrainer."""

    name, config = "dpo", DPOConfig

    def check(self, inputs: PolicyInputs, cfg: DPOConfig) -> None:
        _check_one_process(self.name, inputs.ranks)
        if not inputs.pairs:
            raise PolicyError("--policy dpo learns from preference pairs, and there are none.")

    def train(self, inputs: PolicyInputs, cfg: DPOConfig) -> PolicyResult:
        tokenizer, policy = load_policy(inputs, cfg)
        with tempfile.TemporaryDirectory() as scratch:  # TRL's output_dir; it saves nothing there (no checkpoints)
            steps = train_dpo(policy=policy, tokenizer=tokenizer, pairs=inputs.pairs, cfg=cfg, out_dir=Path(scratch),
                              use_cpu=inputs.ranks.device.type == "cpu", on_step=_trl_progress("DPO", inputs),
                              should_stop=Deadline(inputs.budget_s, inputs.ranks))
        return _finish(self.name, policy, tokenizer, inputs, {"steps": steps, "pairs": len(inputs.pairs)})


class KTOStage:
    """KTO through TRL's KTOTrainer on unpaired thumbs (and, with --kto-with-pairs, the pairs' answers)."""

    name, config = "kto", KTOConfig

    def check(self, inputs: PolicyInputs, cfg: KTOConfig) -> None:
        _check_one_process(self.name, inputs.ranks)
        n = len(kto_examples(inputs.thumbs, inputs.pairs, with_pairs=cfg.with_pairs))
        if n < cfg.min_examples:
            more = "" if cfg.with_pairs else " (--kto-with-pairs also labels the answers of the preference pairs)"
            raise PolicyError(f"--policy kto found {n} labelled answers, at least {cfg.min_examples} needed{more}.")

    def train(self, inputs: PolicyInputs, cfg: KTOConfig) -> PolicyResult:
        tokenizer, policy = load_policy(inputs, cfg)
        examples = kto_examples(inputs.thumbs, inputs.pairs, with_pairs=cfg.with_pairs)
        with tempfile.TemporaryDirectory() as scratch:
            steps = train_kto(policy=policy, tokenizer=tokenizer, examples=examples, cfg=cfg, out_dir=Path(scratch),
                              use_cpu=inputs.ranks.device.type == "cpu", on_step=_trl_progress("KTO", inputs),
                              should_stop=Deadline(inputs.budget_s, inputs.ranks))
        desirable = sum(e["label"] for e in examples)
        return _finish(self.name, policy, tokenizer, inputs,
                       {"steps": steps, "desirable": desirable, "undesirable": len(examples) - desirable})


POLICY_STAGES: dict[str, PolicyStage] = {stage.name: stage for stage in (PPOStage(), RLOOStage(), DPOStage(),
                                                                           KTOStage())}


def check_policy_name(name: str) -> None:
    if name not in POLICY_STAGES:
        raise PolicyError(f"--policy must be one of {', '.join(POLICY_STAGES)}, not {name!r}.")


# ---------------------------------------------------------------- what the stages share


def load_policy(inputs: PolicyInputs, cfg: Any) -> tuple[Any, Any]:
    """(tokenizer, PEFT policy on the ranks' device): the base model with inputs.start_adapter to continue
    from, or with a fresh LoRA shaped by cfg's lora_* fields."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(inputs.base_path)
    base = AutoModelForCausalLM.from_pretrained(inputs.base_path, dtype=torch.float32).to(inputs.ranks.device)
    if not isinstance(cfg, PPOConfig):
        cfg = PPOConfig(lora_r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,  # dropout: noisy log-probs
                        lora_target_modules=list(cfg.lora_target_modules), seed=cfg.seed)
    return tokenizer, build_policy(base, cfg, adapter_dir=inputs.start_adapter)


def token_score_fn(scorer: Scorer, tokenizer, prompts: list[list[dict]]):
    """PPO scores token ids; the reward model reads the conversation as messages and text."""
    by_ids = {tuple(ids): p for ids, p in zip(encode_prompts(prompts, tokenizer), prompts)}

    def score(queries: list[list[int]], responses: list[list[int]]):
        answers = tokenizer.batch_decode(responses, skip_special_tokens=True)
        return scorer.score([by_ids[tuple(q)] for q in queries], answers)

    return score


def packed_scorer(scorer: Scorer, *, enabled: bool):
    """The reward model's frozen linears packed (align.packed) while it scores; a scorer without a model
    (a scripted one) as it is."""
    model = getattr(scorer, "model", None)
    return packed_frozen_linears(model, enabled=enabled) if model is not None else contextlib.nullcontext()


class Deadline:
    """Called after each step: whether to stop now, i.e. whether budget_s since it was made has passed or the
    next step, at the mean pace of the steps between calls so far, would pass it (never, without a budget; a
    budget of 0 or less has passed after the first step). Stopping only once it had passed overran the
    round by up to a step: a KTO step of ~40 s plus the evaluation took a round to 15.3 minutes (issue 15).
    With several ranks they decide together, so all of them stop after the same step."""

    def __init__(self, budget_s: float | None, ranks: Ranks) -> None:
        self.end = time.monotonic() + budget_s if budget_s is not None else None
        self.ranks = ranks
        # The pace is timed from the first call on: the first step also holds the stage's set-up.
        self._first_call: float | None = None
        self._calls = 0

    def __call__(self) -> bool:
        if self.end is None:
            return False
        now = time.monotonic()
        if self._first_call is None:
            self._first_call = now
        next_step_s = (now - self._first_call) / self._calls if self._calls else 0.0  # mean step between calls
        self._calls += 1
        return self.ranks.mean_of({"over": float(now + next_step_s > self.end)})["over"] > 0

    def left_s(self) -> float | None:
        """Seconds until the deadline (negative once passed); None without a budget."""
        return None if self.end is None else self.end - time.monotonic()


def expected_steps(done: int, elapsed_s: float, left_s: float | None, ceiling: int) -> int:
    """The steps a run will likely reach, for its progress bar: `done` so far in elapsed_s, and as many more as
    finish before the deadline left_s away at the pace so far (Deadline stops before a step that would pass
    it), never more than the method's own ceiling. Without a budget, or before a step has set the pace: the
    ceiling."""
    if left_s is None or done == 0 or elapsed_s <= 0:
        return ceiling
    return min(ceiling, done + max(0, math.floor(left_s / (elapsed_s / done))))


class _OutOfTime(Exception):
    """Raised from PPO's step callback to end its run after that step."""


def _check_one_process(name: str, ranks: Ranks) -> None:
    if ranks.world_size > 1:
        raise PolicyError(f"--policy {name} trains in one process; run the round without accelerate launch / "
                          f"torchrun (or with --policy ppo).")


def _trl_progress(label: str, inputs: PolicyInputs):
    def on_step(step: int, of: int, stats: dict[str, float]) -> None:
        margin = stats.get("rewards/margins")
        inputs.progress(f"{label} step {step}/{of}: loss {stats['loss']:.3f}"
                        + (f", reward margin {margin:.3f}" if margin is not None else ""), quiet=True, stats=stats)

    return on_step


def _finish(name: str, policy, tokenizer, inputs: PolicyInputs, metrics: dict) -> PolicyResult:
    """After a TRL trainer: drop its reference copy, save the adapter, leave the policy ready to sample."""
    remove_reference_adapter(policy)
    policy.eval()
    policy.save_pretrained(str(inputs.out_dir))
    return PolicyResult(policy, tokenizer, inputs.out_dir, {"method": name, **metrics})
