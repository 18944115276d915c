"""One alignment round: feedback in the DB -> (SFT) -> reward model -> policy LoRA (--policy: PPO by default,
or RLOO, DPO, KTO; align.policy) -> evaluation ->
a registered candidate adapter in DATA_DIR/adapters/<version>/.

Everything is written to a DATA_DIR/adapters/.tmp-<id>/ the adapter registry makes (storage.adapters)
and renamed into place in the same transaction that registers it: a round that fails or is killed
leaves nothing registered and nothing half-written where a version would be.

Under `accelerate launch` / torchrun, rank 0 alone claims the round, reads the data and writes and
registers the candidate; it shares a RoundJob with the other ranks, all ranks train every stage
together (data-parallel), and rank 0 evaluates. The ranks share one filesystem (one machine).
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from align.candidate_metrics import EVAL_DESCRIPTION, GAIN_SUMMARY, check_metrics
from align.distributed import ONE_PROCESS, Ranks, start_ranks
from align.policy import POLICY_STAGES, Deadline, PolicyError, PolicyInputs, PolicyResult, packed_scorer
from align.stage_configs import RoundConfig, add_stage_arguments, configs_record, stage_configs_from_args
from common.models import resolve_model
from storage import export
from storage.adapters import METRICS_FILE, REWARD_MODEL_DIR, SAMPLES_FILE, SFT_DIR
from storage.round_journal import append_entry, journal_path
from storage.store import FeedbackStore

log = logging.getLogger(__name__)


class RoundError(RuntimeError):
    """A round that cannot run or failed; the message says why. Nothing was registered."""


@dataclass
class RoundData:
    """What a round trains on, exported from the DB through storage.export. `pairs` are the ones the
    reward model trains on (the newest, up to RewardConfig.max_pairs) out of `pairs_available`; `thumbs`
    are the unpaired votes (storage.export.kto_rows)."""

    pairs: list[dict]
    pairs_available: int
    demonstrations: list[dict]
    train_prompts: list[list[dict]]
    eval_prompts: list[list[dict]]
    newest_feedback_id: dict[str, int]
    thumbs: list[dict] = field(default_factory=list)  # an app older than this field sends none

    def counts(self) -> dict[str, int]:
        # "pairs" stays every pair the feedback gave, as before the cap (the admin tab reads it)
        return {"pairs": self.pairs_available, "pairs_used": len(self.pairs),
                "demonstrations": len(self.demonstrations), "thumbs": len(self.thumbs),
                "train_prompts": len(self.train_prompts), "eval_prompts": len(self.eval_prompts)}


@dataclass(frozen=True)
class ActiveAdapter:
    """The adapter being served, to continue from and compare with: its version and its files."""

    version: int
    path: str


@dataclass
class RoundJob:
    """What every training process needs for a round, prepared by rank 0 and shared with the others
    (they read the same files: the base model, the active adapter, and out_dir once rank 0 wrote there)."""

    data: RoundData
    base_path: str
    active: ActiveAdapter | None
    out_dir: Path


def read_feedback(store: FeedbackStore) -> dict[str, Any]:
    """What a round learns from, exported from the DB (the same export functions as `python -m
    storage export`): preference pairs, distinct prompts (newest first), demonstrations, and the
    newest feedback ids. Plain JSON, so a remote trainer can fetch it over the API."""
    try:
        pairs = export.preference_pairs(store)
        prompts = [row["prompt"] for row in export.prompts(store)]  # newest first, deduplicated
        demonstrations = export.demonstrations(store)
        thumbs = export.kto_rows(store)
    except (ValueError, KeyError, TypeError, sqlite3.DatabaseError) as e:  # JSONDecodeError is a ValueError
        raise RoundError(f"The feedback in the database could not be read ({type(e).__name__}: {e}); "
                         f"fix or remove the damaged row and run the round again.") from e
    newest = {
        "vote": max((v.id for v in store.latest_votes()), default=0),
        "ranking": max((r.id for r in store.rankings()), default=0),
        "demonstration": max((d.id for d in store.demonstrations()), default=0),
    }
    return {"pairs": pairs, "prompts": prompts, "demonstrations": demonstrations, "thumbs": thumbs,
            "newest_feedback_id": newest}


def round_data(feedback: dict[str, Any], cfg: RoundConfig, *, max_pairs: int) -> RoundData:
    """Hold out the newest prompts for evaluation, keep the pairs of the newest feedback up to
    max_pairs (RewardConfig.max_pairs; 0: all) and check there is enough; raises RoundError otherwise.
    A local round and the remote worker both prepare their data here."""
    from align.data import newest_groups

    pairs, prompts = feedback["pairs"], feedback["prompts"]
    held_out, train = prompts[: cfg.eval_prompts], prompts[cfg.eval_prompts:]
    if len(pairs) < cfg.min_pairs:
        raise RoundError(f"Too little feedback for a round: {len(pairs)} preference pairs, "
                         f"at least {cfg.min_pairs} needed.")
    if len(train) < cfg.min_prompts or not held_out:
        raise RoundError(f"Too few prompts for a round: {len(prompts)} distinct prompts, at least "
                         f"{cfg.min_prompts + cfg.eval_prompts} needed ({cfg.eval_prompts} are held out).")
    return RoundData(pairs=newest_groups(pairs, max_pairs=max_pairs), pairs_available=len(pairs),
                     demonstrations=feedback["demonstrations"], train_prompts=train, eval_prompts=held_out,
                     newest_feedback_id=feedback["newest_feedback_id"], thumbs=feedback.get("thumbs", []))


def collect_round_data(store: FeedbackStore, cfg: RoundConfig, *, max_pairs: int) -> RoundData:
    """Export the feedback and check there is enough of it; raises RoundError otherwise."""
    return round_data(read_feedback(store), cfg, max_pairs=max_pairs)


@dataclass
class Stages:
    """The stage implementations, passed in so tests can swap a stage for one that fails."""

    train_sft: Callable[..., dict]
    train_reward_model: Callable[..., dict]
    reward_scorer: Callable[..., Any]
    split_pairs: Callable[..., tuple[list, list]]
    policy_stages: dict[str, Any] = field(default_factory=lambda: dict(POLICY_STAGES))  # by --policy name


def default_stages() -> Stages:
    from align.data import split_by_group
    from align.reward import RewardScorer, train_reward_model
    from align.sft import train_sft

    return Stages(train_sft=train_sft, train_reward_model=train_reward_model,
                  reward_scorer=lambda base, rm_dir, device: RewardScorer.load(rm_dir, base_model_path=base,
                                                                               device=device),
                  split_pairs=split_by_group)


def run_round(*, store: FeedbackStore, data_dir: str | Path, cfg: RoundConfig, sft_cfg, rm_cfg, ppo_cfg,
              policy_cfgs: dict[str, Any] | None = None, stages: Stages | None = None,
              progress: Callable[..., None] | None = None, round_id: int | None = None,
              ranks: Ranks = ONE_PROCESS) -> int:
    """Train, evaluate and register one candidate; returns its version. With several ranks this runs on
    rank 0, which shares the round with the others (they run `train_beside_main`).

    progress(line, quiet=False) is told each stage (and, quietly, each PPO step: the bar shows those)."""
    import torch

    started = time.monotonic()  # the round's time budget (cfg.time_budget_s) counts from here
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    progress = progress or print_progress
    data = collect_round_data(store, cfg, max_pairs=rm_cfg.max_pairs)
    base_path = resolve_model(cfg.model, data_dir)
    active = store.registry.active_adapter()
    tmp = store.registry.new_round_dir()
    try:
        job = RoundJob(data=data, base_path=str(base_path), out_dir=tmp,
                       active=ActiveAdapter(version=active.version, path=active.path) if active else None)
        ranks.share(job)
        metrics = train_candidate(data=data, base_path=base_path, active=job.active, out_dir=tmp, cfg=cfg,
                                  sft_cfg=sft_cfg, rm_cfg=rm_cfg, ppo_cfg=ppo_cfg, policy_cfgs=policy_cfgs,
                                  stages=stages, progress=progress, ranks=ranks, started=started)
        version = register_candidate(store, tmp, base_model=str(base_path),
                                     parent_version=active.version if active else None,
                                     data_record=data_record(data), metrics=metrics, round_id=round_id)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    progress(_summary(version, metrics))
    return version


def train_candidate(*, data: RoundData, base_path: str, active, out_dir: Path, cfg: RoundConfig, sft_cfg, rm_cfg,
                    ppo_cfg, policy_cfgs: dict[str, Any] | None = None, stages: Stages | None = None,
                    progress: Callable[..., None] | None = None, ranks: Ranks = ONE_PROCESS,
                    started: float | None = None) -> dict | None:
    """(SFT) -> reward model -> policy (cfg.policy: PPO, RLOO, DPO or KTO) -> evaluation, all written into
    out_dir; returns the metrics (also in out_dir/metrics.json). `active` is the served adapter (its
    .version and .path) to continue from and compare with, or None for the base model. `policy_cfgs` holds
    the config of each method but PPO's (align.stage_configs.StageConfigs.training; a method missing there runs
    on its defaults). Touches no database: the remote trainer (align.worker) runs this on data fetched over
    the API.

    With several ranks, every rank calls this with the same arguments and trains every stage on its
    share of the data; rank 0 alone writes into out_dir, evaluates and returns the metrics (the
    others return None).

    `started` is the time.monotonic() the round began (default: now), from which cfg.time_budget_s counts."""
    started = time.monotonic() if started is None else started
    stages = stages or default_stages()
    progress = progress or print_progress
    stage, policy_cfg = _policy_stage_and_config(cfg.policy, stages, ppo_cfg, policy_cfgs)
    timings: dict[str, float] = {}
    progress(f"Round on {data.counts()} (active adapter: {active.version if active else 'base'}, "
             f"{ranks.world_size} x {ranks.device.type}, policy {cfg.policy})")
    _check_policy(stage, policy_cfg, _policy_inputs(data, base_path, None, None, out_dir, None, progress, ranks))
    start_adapter = _sft_stage(data, base_path, sft_cfg, out_dir, stages, timings, progress, ranks,
                               budget_s=sft_budget(cfg, started))
    if start_adapter is None and active is not None:
        start_adapter = active.path  # continue from what is being served
    rm_metrics, scorer = _reward_stage(data, base_path, rm_cfg, cfg, out_dir, stages, timings, progress, ranks)
    budget_s = policy_budget(cfg, started)
    inputs = _policy_inputs(data, base_path, start_adapter, scorer, out_dir, budget_s, progress, ranks)
    result = _policy_stage(stage, policy_cfg, inputs, timings, progress)
    result.metrics["budget_s"] = budget_s
    if not ranks.is_main:
        return None  # every rank holds the same weights: rank 0 saved them and evaluates them
    evaluation = _evaluation_stage(result, scorer, data, cfg, active, ppo_cfg.packed_weights, timings, progress)
    metrics = {"reward_model": rm_metrics, "policy": result.metrics, "evaluation": evaluation,
               "timings_s": timings, "data": data.counts(),
               "training": {"processes": ranks.world_size, "device": ranks.device.type},
               "configs": configs_record(cfg, sft_cfg, rm_cfg, policy_cfg)}
    if cfg.policy == "ppo":
        metrics["ppo_steps"] = result.metrics["steps"]  # where the admin tab reads PPO's curves
    (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=1))
    (out_dir / SAMPLES_FILE).write_text(json.dumps(evaluation["candidate"]["samples"], indent=1,
                                                     ensure_ascii=False))
    return metrics


def data_record(data: RoundData) -> dict:
    """What the adapters table keeps about a round's data: counts and the newest feedback ids."""
    return {**data.counts(), "newest_feedback_id": data.newest_feedback_id}


def _sft_stage(data, base_path, sft_cfg, tmp, stages, timings, progress, ranks, *, budget_s) -> str | None:
    if len(data.demonstrations) < sft_cfg.min_demonstrations:
        progress(f"SFT skipped: {len(data.demonstrations)} demonstrations (< {sft_cfg.min_demonstrations}).")
        return None
    progress(f"SFT on {len(data.demonstrations)} demonstrations{_for_up_to(budget_s)} ...")
    t = time.perf_counter()
    # The HF Trainer places itself (on the GPU of this rank when there is one) unless told to use the CPU.
    sft_metrics = stages.train_sft(base_model_path=base_path, rows=data.demonstrations, cfg=sft_cfg,
                                   out_dir=tmp / SFT_DIR, use_cpu=ranks.device.type == "cpu",
                                   should_stop=Deadline(budget_s, ranks))
    timings["sft"] = time.perf_counter() - t
    if sft_metrics.get("stopped_at_step") is not None:
        progress(f"SFT stopped at its budget after {sft_metrics['stopped_at_step']} of "
                 f"{sft_metrics['planned_steps']} steps ({timings['sft']:.0f} s).")
    return str(tmp / SFT_DIR)


def _for_up_to(budget_s: float | None) -> str:
    """A stage's budget as its progress line says it ("" without one)."""
    return "" if budget_s is None else f" for up to {max(budget_s, 0):.0f} s"


def sft_budget(cfg: RoundConfig, started: float) -> float | None:
    """Seconds SFT may train: cfg.sft_budget_share of cfg.time_budget_s, less what the round has spent since
    `started`; None without a round budget. SFT stops before a step that would pass it (align.policy.Deadline)."""
    if cfg.time_budget_s <= 0:
        return None
    return cfg.sft_budget_share * cfg.time_budget_s - (time.monotonic() - started)


def _reward_stage(data, base_path, rm_cfg, cfg, tmp, stages, timings, progress, ranks):
    train, held_out = stages.split_pairs(data.pairs, eval_fraction=rm_cfg.eval_fraction, seed=cfg.seed)
    progress(f"Reward model on {len(train)} pairs ({len(held_out)} held out; the newest {len(data.pairs)} "
             f"of {data.pairs_available}) ...")
    t = time.perf_counter()
    rm_metrics = stages.train_reward_model(base_model_path=base_path, train_rows=train, eval_rows=held_out,
                                           cfg=rm_cfg, out_dir=tmp / REWARD_MODEL_DIR,
                                           use_cpu=ranks.device.type == "cpu")
    timings["reward_model"] = time.perf_counter() - t
    _report_reward_model(rm_metrics, timings["reward_model"], progress)
    # Every rank scores its own PPO rollouts, so every rank loads the reward model rank 0 saved.
    return rm_metrics, stages.reward_scorer(base_path, tmp / REWARD_MODEL_DIR, ranks.device)


def _report_reward_model(rm_metrics: dict, seconds: float, progress) -> None:
    """The reward model's held-out accuracy as soon as it is known: the admin tab shows it while PPO runs."""
    accuracy, pairs = rm_metrics.get("held_out_accuracy"), rm_metrics.get("held_out_pairs")
    measured = f"{accuracy:.1%} held-out accuracy on {pairs} pairs" if accuracy is not None else "no held-out pairs"
    progress(f"Reward model trained in {seconds:.0f} s: {measured}.",
             stats={"rm_accuracy": accuracy, "rm_held_out_pairs": pairs})


def _policy_stage_and_config(name: str, stages: Stages, ppo_cfg, policy_cfgs: dict[str, Any] | None):
    stage = stages.policy_stages[name]
    if name == "ppo":
        return stage, ppo_cfg
    return stage, (policy_cfgs or {}).get(name) or stage.config()


def evaluation_engine(cfg: RoundConfig):
    """The serving engine that samples this round's evaluation answers (align.served_eval.ServedSampler),
    or None: the round samples them itself."""
    from align.served_eval import ServedSampler

    return ServedSampler.from_environment() if cfg.eval_on_engine else None


def policy_budget(cfg: RoundConfig, started: float) -> float | None:
    """Seconds the policy stage may train: what is left of cfg.time_budget_s since `started` once the
    evaluation's reserve is kept (cfg.eval_engine_reserve_s when the serving engine samples its answers,
    else cfg.eval_reserve_s), capped by cfg.policy_budget_s; None when neither is set.
    What is left may be 0 or less when the earlier stages took it all: the stage then stops after its
    first step (align.policy.Deadline), so the round still ends with an adapter to evaluate."""
    limits = []
    if cfg.policy_budget_s > 0:
        limits.append(cfg.policy_budget_s)
    if cfg.time_budget_s > 0:
        reserve = cfg.eval_engine_reserve_s if evaluation_engine(cfg) else cfg.eval_reserve_s
        limits.append(cfg.time_budget_s - (time.monotonic() - started) - reserve)
    return min(limits, default=None)


def _policy_inputs(data, base_path, start_adapter, scorer, out_dir, budget_s, progress, ranks) -> PolicyInputs:
    return PolicyInputs(base_path=str(base_path), start_adapter=start_adapter, scorer=scorer,
                        train_prompts=data.train_prompts, pairs=data.pairs, thumbs=data.thumbs, out_dir=out_dir,
                        budget_s=budget_s, ranks=ranks, progress=progress)


def _check_policy(stage, policy_cfg, inputs: PolicyInputs) -> None:
    """Refuse before SFT and the reward model spend minutes: the method must be able to run on this data."""
    try:
        stage.check(inputs, policy_cfg)
    except PolicyError as e:
        raise RoundError(str(e)) from None


def _policy_stage(stage, policy_cfg, inputs: PolicyInputs, timings, progress) -> PolicyResult:
    progress(f"Policy ({stage.name}) from {inputs.start_adapter or 'a new adapter'}{_for_up_to(inputs.budget_s)} ...")
    t = time.perf_counter()
    try:
        result = stage.train(inputs, policy_cfg)
    except PolicyError as e:
        raise RoundError(str(e)) from None
    timings[stage.name] = time.perf_counter() - t
    return result


def _evaluation_stage(result: PolicyResult, scorer, data, cfg, active, packed_weights: bool, timings, progress
                      ) -> dict:
    """The candidate (the policy's new adapter) against the served adapter (or the base model) on the
    held-out prompts, the same for every policy method. The answers are sampled by the app's serving
    engine when the app started this round (cfg.eval_on_engine), else in this process."""
    from align.evaluate import EvalSettings, compare
    from align.packed import packed_frozen_linears
    from align.served_eval import ServedSamplingError

    policy, tokenizer = result.policy, result.tokenizer
    engine = evaluation_engine(cfg)
    t = time.perf_counter()
    settings = EvalSettings(max_new_tokens=cfg.eval_max_new_tokens, temperature=cfg.eval_temperature,
                            batch_size=cfg.eval_batch_size, seed=cfg.seed, samples=cfg.eval_samples,
                            answers_per_prompt=cfg.eval_answers_per_prompt,
                            served_max_tokens=cfg.eval_engine_max_tokens or None)

    def evaluate(engine) -> dict:
        where = "by the serving engine" if engine else f"here, {cfg.eval_max_new_tokens} tokens each"
        progress(f"Evaluating on {len(data.eval_prompts)} held-out prompts x {cfg.eval_answers_per_prompt} "
                 f"answers (sampled {where}) ...")
        # The reward model scores every answer and the policy samples them (or takes their KL): both packed.
        with packed_scorer(scorer, enabled=packed_weights), packed_frozen_linears(policy, enabled=packed_weights):
            return compare(policy, tokenizer, scorer.score, data.eval_prompts, settings,
                           candidate_adapter=policy.active_adapter, reference_path=active.path if active else None,
                           reference_version=active.version if active else None, engine=engine,
                           candidate_dir=str(result.adapter_dir))

    try:
        evaluation = evaluate(engine)
    except ServedSamplingError as e:  # the app stopped or refused: the round still ends with a judged candidate
        progress(f"The serving engine could not sample the evaluation answers ({e}); sampling them here.")
        evaluation = evaluate(None)
    timings["evaluation"] = time.perf_counter() - t
    return evaluation


def register_candidate(store: FeedbackStore, tmp: Path, *, base_model: str, parent_version: int | None,
                       data_record: dict, metrics: dict, round_id: int | None) -> int:
    """Rename the finished round in `tmp` into a new adapters/<version>/ and register it, as one step
    (storage.adapters.AdapterRegistry.register_dir; with round_id, that round ends there, succeeded).
    Metrics the gate could not judge raise RoundError; nothing is registered then."""
    return store.registry.register_dir(tmp, base_model=base_model, parent_version=parent_version,
                                       data=data_record, metrics=gate_metrics(metrics), round_id=round_id)


def gate_metrics(metrics: dict) -> dict:
    """The summary stored in the adapters table and read by the gate (the full record stays in
    metrics.json). Raises RoundError naming what is missing or malformed (align.candidate_metrics.check_metrics):
    a candidate the gate cannot judge is never registered."""
    try:
        ev = metrics["evaluation"]
        strip = lambda m: {k: v for k, v in m.items() if k not in ("samples", "prompt_rewards")}  # noqa: E731
        summary = {"candidate": strip(ev["candidate"]), "reference": strip(ev["reference"]),
                   "reference_version": ev["reference_version"], "reward_gain": ev["reward_gain"],
                   **{key: ev.get(key) for key in GAIN_SUMMARY},
                   **{key: ev[key] for key in EVAL_DESCRIPTION if key in ev},
                   "rm_accuracy": metrics["reward_model"].get("held_out_accuracy"),
                   "rm_held_out_pairs": metrics["reward_model"].get("held_out_pairs"),
                   "timings_s": metrics["timings_s"]}
    except (KeyError, TypeError, AttributeError) as e:
        raise RoundError(f"The round's metrics lack what the gate reads ({type(e).__name__}: {e}).") from e
    problems = check_metrics(summary)
    if problems:
        raise RoundError(f"The round's metrics cannot be judged: {' '.join(problems)}")
    return summary


def _summary(version: int, metrics: dict) -> str:
    ev = metrics["evaluation"]
    c, r = ev["candidate"], ev["reference"]
    low, high = ev["reward_gain_interval"]
    return (f"Registered candidate adapter v{version}: reward {c['mean_reward']:.3f} vs "
            f"{r['mean_reward']:.3f} ({'v' + str(ev['reference_version']) if ev['reference_version'] else 'base'}), "
            f"gain {ev['reward_gain']:+.3f} [{low:+.3f}, {high:+.3f}], "
            f"KL to base {c['kl_to_base']:.2f}, degenerate {c['degenerate_fraction']:.0%}, "
            f"RM held-out accuracy {metrics['reward_model'].get('held_out_accuracy')}, "
            f"time {sum(metrics['timings_s'].values()):.0f} s")


def add_round_arguments(parser) -> None:
    """`python -m align run` flags: the data dir and every field of the round's configs (align.stage_configs)."""
    parser.add_argument("--data-dir", default="./data", help="Data directory holding chat.db and the adapters.")
    parser.add_argument("--round-id", type=int, default=None,
                        help="Run the round the app has already claimed (set by the app; leave unset from a shell).")
    add_stage_arguments(parser)


def round_from_args(args) -> dict:
    """Run a round from parsed flags under the DB's one-round lock; returns the candidate's summary.

    The app claims a round for the process it starts and passes --round-id (this process adopts
    it); from a shell, this claims a new one and is refused while another round runs. Under
    `accelerate launch`, rank 0 does all of that and the other ranks train beside it (they return {}).
    """
    from storage.process import current_process

    configs = stage_configs_from_args(args)
    cfg, stage_cfgs = configs.round, configs.training()
    ranks = start_ranks(device=cfg.device, timeout_s=cfg.rank_timeout_s)
    if not ranks.is_main:
        return train_beside_main(ranks, cfg=cfg, **stage_cfgs)
    with ranks.failures_shared():
        store = FeedbackStore.open(args.data_dir)
        try:
            if args.round_id is not None:
                claimed = store.round_lock.adopt_round(args.round_id, process=current_process())
            else:
                claimed = store.round_lock.claim_round(trigger="cli", process=current_process())
            store.registry.remove_partial_rounds()  # we hold the lock: any .tmp-* is a dead round's
            progress = round_progress(store, claimed.id, journal=journal_path(args.data_dir, claimed.id))
            try:
                version = run_round(store=store, data_dir=args.data_dir, cfg=cfg, **stage_cfgs, progress=progress,
                                    round_id=claimed.id, ranks=ranks)
            except BaseException as e:
                store.round_lock.finish_round(claimed.id, error=str(e) if isinstance(e, RoundError) else
                                              f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
                raise
            adapter = store.registry.adapter(version)  # register_candidate ended the round, succeeded
        finally:
            store.close()
    return {"round": claimed.id, "version": version, "path": adapter.path, "status": adapter.status,
            "reward_gain": adapter.metrics.get("reward_gain")}


def train_beside_main(ranks: Ranks, *, cfg: RoundConfig, sft_cfg, rm_cfg, ppo_cfg,
                      policy_cfgs: dict[str, Any] | None = None, stages: Stages | None = None) -> dict:
    """A rank other than 0: wait for rank 0's RoundJob (or its error), then train every stage with it.
    Rank 0 writes, evaluates and registers or uploads; this rank has nothing to report."""
    import torch

    job = ranks.receive()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    train_candidate(data=job.data, base_path=job.base_path, active=job.active, out_dir=job.out_dir, cfg=cfg,
                    sft_cfg=sft_cfg, rm_cfg=rm_cfg, ppo_cfg=ppo_cfg, policy_cfgs=policy_cfgs, stages=stages,
                    progress=_silent, ranks=ranks)
    return {}


def _silent(line: str, *, quiet: bool = False, stats: dict | None = None) -> None:
    """Progress of ranks other than 0: rank 0 reports for all of them."""


def print_progress(line: str, *, quiet: bool = False, stats: dict | None = None) -> None:
    if not quiet:
        print(line, flush=True)


def round_progress(store: FeedbackStore, round_id: int, *, journal: Path | None = None) -> Callable[..., None]:
    """Print each stage line and keep the latest line in the rounds row; with `journal`, append every
    line and the stats it carries (each PPO step's) there too: the admin tab draws them while the round
    runs (storage.round_journal)."""

    def progress(line: str, *, quiet: bool = False, stats: dict | None = None) -> None:
        print_progress(line, quiet=quiet)
        store.round_lock.update_round_progress(round_id, line)
        if journal is not None:
            append_entry(journal, line, quiet=quiet, stats=stats)

    return progress
