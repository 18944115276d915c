"""Every config a round reads, in one registry: RoundConfig (the round's own flags) and each stage's config
with its flag prefix: SFT (--sft-*), the reward model (--rm-*) and every policy method (--ppo-*, --rloo-*,
--dpo-*, --kto-*; align.policy). `python -m align run`, `python -m align worker` and the app's --align-args
(checked when the app starts, loop.rounds.check_align_args) build their flags from STAGES, and a round
records its configs in metrics.json under the same names."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from typing import Any

from align.config import RewardConfig, SFTConfig
from align.policy import POLICY_STAGES, PolicyError, check_policy_name
from common.flags import add_dataclass_args, from_namespace


class ConfigError(ValueError):
    """A round flag that does not exist, or a value a round cannot run with; the message names the flag."""


@dataclass
class RoundConfig:
    """The round's own settings (its flags have no prefix): base model, policy method, data thresholds,
    evaluation, threads and device."""

    model: str = field(
        default="default",
        metadata={"help": "Base model (HF id or local path; 'default' = the prepared SmolLM2-135M-Instruct). "
                          "Must be the model the app serves."},
    )
    policy: str = field(
        default="ppo",  # RM + PPO is the recipe the rounds were measured with (BENCHMARKS.md)
        metadata={"help": "How the policy adapter learns: 'ppo' or 'rloo' (sampled answers scored by the round's "
                          "reward model), 'dpo' (the preference pairs) or 'kto' (thumbs, and the pairs' answers). "
                          "Each has its own flags (--ppo-*, --rloo-*, --dpo-*, --kto-*); every one is evaluated "
                          "the same way."},
    )
    time_budget_s: float = field(
        default=900.0,  # a round is meant to finish within 15 minutes on 2 CPU cores (issue 15)
        metadata={"help": "The wall time a round aims to finish within: the policy stage trains until what is "
                          "left of it, minus --eval-reserve-s, runs out (it stops before a step that would pass "
                          "that, at the pace of its steps so far). 0 = no round budget: each method's own step "
                          "count decides."},
    )
    eval_reserve_s: float = field(
        default=150.0,  # the evaluation of 32 prompts x 4 answers x 2 models took 73 s on a quiet 2-core machine
        # (bench/results/efficacy-however-rankings+thumbs.json, "stage_times_s"), plus saving the models and
        # registering; twice that leaves room for a busier machine
        metadata={"help": "Seconds of --time-budget-s kept for what follows the policy stage when this process "
                          "samples the evaluation answers: the evaluation, saving and registering the candidate."},
    )
    eval_engine_reserve_s: float = field(
        default=330.0,  # the serving engine's evaluation at 256 tokens took 229 s and 282 s in two rounds on the
        # slower 2-core machine (bench/results/efficacy-words_40_120-rankings+thumbs-length-bumps-160-engine-eval*
        # .json), 309 s in bench/results/eval_phases.json: sampling 82 s (reference) + 109 s (candidate, through
        # its LoRA), the candidate's KL passes here 74 s, scoring 44 s; plus saving and registering
        metadata={"help": "The same when the serving engine samples them (--eval-on-engine, in a round the app "
                          "started): answers as long as served ones cost more than this process's short ones."},
    )
    sft_budget_share: float = field(
        default=0.3,  # 270 s of 900: SFT on 175 rewrites ran 2 epochs in 811 s and left PPO one step (BENCHMARKS.md);
        # a third of the budget still trains ~130 rewrites once, and the policy stage starts from that adapter
        metadata={"help": "Share of --time-budget-s, counted from the round's start, that SFT on rewritten answers "
                          "may train: it stops before an optimizer step that would pass it, keeping what it learned, "
                          "and the reward model and the policy stage get the rest (0 to 1; no effect with "
                          "--time-budget-s 0)."},
    )
    policy_budget_s: float = field(
        default=0.0,  # 0: only --time-budget-s limits the policy stage
        metadata={"help": "Seconds the policy stage alone may train, a cap besides --time-budget-s; it stops "
                          "before a step that would pass them (0: no cap of its own)."},
    )
    min_pairs: int = field(
        default=8,  # fewer comparisons than this teach a reward model noise
        metadata={"help": "Fewest preference pairs (rankings, thumbs, rewrites) a round needs."},
    )
    min_prompts: int = field(
        default=8,  # PPO needs at least one batch of distinct prompts besides the held-out ones
        metadata={"help": "Fewest distinct user prompts PPO trains on (after the held-out ones)."},
    )
    eval_prompts: int = field(
        default=32,  # the gate's interval is over prompts: fewer make it too wide to promote a real gain
        metadata={"help": "Newest distinct prompts held out from PPO for evaluating the candidate (at least 2: "
                          "the gate's confidence interval on the reward gain is taken over prompts)."},
    )
    eval_answers_per_prompt: int = field(
        default=4,  # one sampled answer says little about a prompt; 4 quarter the sampling variance of its mean
        metadata={"help": "Sampled answers per held-out prompt, for the candidate and for the reference alike; "
                          "the gain is compared per prompt over their mean reward."},
    )
    eval_batch_size: int = field(
        default=64,  # 128 answers per model in 2 decode loops instead of 16 at 8: wider matmuls, fewer steps
        metadata={"help": "Evaluation answers sampled in one batch."},
    )
    eval_on_engine: bool = field(
        # Off by default: answers as long as served ones cost 229-309 s to evaluate on the slower 2-core machine
        # (the candidate samples through its LoRA at ~110-170 tokens/s, and its KL takes two passes here), about
        # three PPO steps of a 15-minute round, more when the candidate's answers are long (BENCHMARKS.md)
        default=False,
        metadata={"help": "Have the app's serving engine sample the evaluation answers, at the length it "
                          "serves (--eval-engine-max-tokens), when the app started this round, so the gate "
                          "judges what users get (a habit past token 48, a length band); a round from a shell "
                          "or a remote trainer samples in its own process (--eval-max-new-tokens)."},
    )
    eval_engine_max_tokens: int = field(
        default=0,  # what a user who sets no max_tokens gets
        metadata={"help": "Answer length (tokens) of the evaluation answers when the serving engine samples "
                          "them (0: the app's default answer length, --max-tokens)."},
    )
    eval_max_new_tokens: int = field(
        default=48,  # this process decodes ~20 tokens/s on 2 cores: longer answers would eat the policy's budget
        metadata={"help": "Answer length (tokens) of the evaluation answers when this process samples them "
                          "(see --eval-on-engine)."},
    )
    eval_temperature: float = field(
        default=1.0,  # the policy's own distribution: KL estimates from these samples are unbiased
        metadata={"help": "Sampling temperature of evaluation answers."},
    )
    eval_samples: int = field(default=5, metadata={"help": "Evaluation answers kept verbatim in metrics.json."})
    seed: int = field(default=0, metadata={"help": "Seed for splits, sampling and initialisation."})
    num_threads: int = field(
        default=0,
        metadata={"help": "CPU threads torch may use in the round (0: torch's default, one per core); "
                          "--sft-num-threads and --rm-num-threads, when set, apply to their stage."},
    )
    device: str = field(
        default="auto",  # a round on a GPU machine should not need a flag to use the GPU
        metadata={"help": "Where every stage trains and the evaluation runs: 'auto' = this process's GPU when "
                          "there is one (under accelerate launch / torchrun, the GPU of its local rank; pick "
                          "GPUs with CUDA_VISIBLE_DEVICES), else the CPU; 'cpu' = the CPU even when a GPU is "
                          "there (say, when vLLM fills it)."},
    )
    rank_timeout_s: float = field(
        default=1800.0,  # rank 0 may spend minutes preparing the base model and fetching data while the rest wait
        metadata={"help": "With several training processes (accelerate launch / torchrun): seconds one waits for "
                          "the others at a synchronisation point before it fails with an error instead of "
                          "hanging."},
    )

    def __post_init__(self) -> None:
        _check_device(self.device)
        if self.eval_engine_max_tokens < 0:
            raise ConfigError("--eval-engine-max-tokens is a number of tokens: 0 (the app's default) or more.")
        if self.eval_prompts < 2 or self.eval_answers_per_prompt < 1 or self.eval_batch_size < 1:
            raise ConfigError("--eval-prompts must be at least 2 (the gate's interval is over prompts), and "
                              "--eval-answers-per-prompt and --eval-batch-size at least 1.")
        if min(self.time_budget_s, self.eval_reserve_s, self.eval_engine_reserve_s, self.policy_budget_s) < 0:
            raise ConfigError("--time-budget-s, --eval-reserve-s, --eval-engine-reserve-s and --policy-budget-s "
                              "are seconds: 0 or more.")
        if not 0 <= self.sft_budget_share <= 1:
            raise ConfigError(f"--sft-budget-share is a share of --time-budget-s, from 0 to 1, not "
                              f"{self.sft_budget_share}.")
        try:
            check_policy_name(self.policy)
        except PolicyError as e:
            raise ConfigError(str(e)) from None


def _check_device(device: str) -> None:
    if device not in ("auto", "cpu"):
        raise ConfigError(f"--device must be 'auto' or 'cpu', not {device!r}; choose GPUs with "
                          f"CUDA_VISIBLE_DEVICES.")


@dataclass(frozen=True)
class Stage:
    """One config of the registry: its name (in StageConfigs and in metrics.json's "configs"), its flags'
    prefix (--<prefix>-<field>; none for the round's own) and its dataclass."""

    name: str
    prefix: str
    config: type


STAGES: tuple[Stage, ...] = (
    Stage("round", "", RoundConfig),
    Stage("sft", "sft", SFTConfig),
    Stage("reward", "rm", RewardConfig),
    *(Stage(name, name, stage.config) for name, stage in POLICY_STAGES.items()),  # ppo, rloo, dpo, kto
)
POLICY_NAMES = tuple(POLICY_STAGES)


@dataclass
class StageConfigs:
    """One round's configs, built from flags by stage_configs_from_args."""

    round: RoundConfig
    sft: SFTConfig
    reward: RewardConfig
    policies: dict[str, Any]  # every policy method's config, by --policy name

    def training(self) -> dict[str, Any]:
        """The stage configs as run_round, train_candidate and run_worker take them (beside the round's own)."""
        return {"sft_cfg": self.sft, "rm_cfg": self.reward, "ppo_cfg": self.policies["ppo"],
                "policy_cfgs": {name: cfg for name, cfg in self.policies.items() if name != "ppo"}}


def add_stage_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per field of every config in STAGES."""
    for stage in STAGES:
        add_dataclass_args(parser, stage.config, prefix=stage.prefix)


def stage_configs_from_args(args: argparse.Namespace) -> StageConfigs:
    """Every config from parsed flags; a value a config refuses is a ConfigError naming it."""
    try:
        built = {stage.name: from_namespace(stage.config, args, prefix=stage.prefix) for stage in STAGES}
    except ValueError as e:  # each config's own checks: RoundConfig's, PPOConfigError, RLOOConfigError, ...
        raise ConfigError(str(e)) from None
    return StageConfigs(round=built["round"], sft=built["sft"], reward=built["reward"],
                        policies={name: built[name] for name in POLICY_NAMES})


class _RefusingParser(argparse.ArgumentParser):
    """argparse that raises ConfigError with its message instead of printing the usage and exiting."""

    def error(self, message: str):
        raise ConfigError(f"{message}; `python -m align run --help` lists a round's flags.")


def parse_stage_flags(argv: list[str]) -> StageConfigs:
    """The configs that these round flags (STAGES' flags only) give; ConfigError with a sentence for a flag
    that does not exist, a value of the wrong type or one a config refuses."""
    parser = _RefusingParser(prog="round flags", add_help=False)
    add_stage_arguments(parser)
    return stage_configs_from_args(parser.parse_args(argv))


def configs_record(*configs) -> dict[str, dict]:
    """metrics.json's "configs": each config under its name in STAGES ("round", "sft", "reward", "ppo", ...)."""
    names = {stage.config: stage.name for stage in STAGES}
    return {names[type(cfg)]: asdict(cfg) for cfg in configs}
