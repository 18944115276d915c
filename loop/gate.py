"""The promotion gate: a candidate adapter replaces the active one only if its evaluation says it is
better by more than the noise. It reads the summary a round stores with the adapter
(`adapters.metrics`, align.round.gate_metrics; its schema is align.candidate_metrics): the paired reward
gain of the candidate over the reference (the adapter that was active when the round ran, or the base
model) on the same held-out prompts with its confidence interval, the reward model's own held-out
accuracy, and the candidate's KL to the base model and both degenerate-answer fractions."""

from __future__ import annotations

from dataclasses import dataclass, field

from align.candidate_metrics import check_metrics


@dataclass
class GateConfig:
    min_reward_margin: float = field(
        default=0.0,  # any real improvement: the interval already keeps noise out
        metadata={"help": "The lower end of the confidence interval on the candidate's paired reward gain over "
                          "the active adapter (held-out prompts, reward-model score units) must be above this."},
    )
    min_effect_size: float = field(
        default=0.1,  # a tenth of one answer's typical deviation: below it users cannot tell the versions apart.
        # At margin 0 alone the gate promoted a DPO candidate at KL 0.07 whose gain, +0.110 [+0.014, +0.207],
        # was real to the reward model and invisible to its users (+0.5 points on their rule; BENCHMARKS.md)
        metadata={"help": "The lower end of the interval on the gain must also be above this many standard "
                          "deviations of the reference's rewards between answers to one prompt (0: the margin "
                          "alone)."},
    )
    min_rm_accuracy: float = field(
        default=0.6,  # chance is 0.5 (ties count as wrong); a few held-out pairs land above it by luck
        metadata={"help": "Lowest held-out pairwise accuracy of the round's reward model for its candidate to be "
                          "promoted: a reward model at chance must not promote anything, whatever gain it "
                          "reports."},
    )
    max_kl: float = field(
        default=10.0,  # nats per answer; beyond this the policy has left the base model's language
        metadata={"help": "Largest mean KL(candidate || base) per answer, in nats, a promoted adapter may have."},
    )
    max_degenerate_increase: float = field(
        default=0.05,  # one answer in 20: a collapse into empty or repetitive answers moves this fraction by far
        # more, while at 0 a single unlucky sample among the evaluation's answers rejected a candidate that had
        # learned what its users asked for (the learning-loop test, 1 of 32 answers)
        metadata={"help": "How much the fraction of empty/repetitive answers may grow over the active "
                          "adapter's, as a fraction of all evaluated answers (0.05: by 5 points; 0: not at all)."},
    )


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: list[str]  # every check, passed or failed, as a sentence for the admin tab


def decide(metrics: dict, *, active_version: int | None, cfg: GateConfig) -> Decision:
    """Promote only if every check passes. `active_version` is what serves now: the candidate must
    have been evaluated against it, not against something an admin has since rolled away from."""
    if not isinstance(metrics, dict) or not metrics.get("candidate") or not metrics.get("reference"):
        return Decision(False, ["The candidate has no evaluation to judge it by."])
    problems = check_metrics(metrics)
    if problems:
        return Decision(False, problems)
    c, r = metrics["candidate"], metrics["reference"]
    ref_name = _name(metrics.get("reference_version"))
    checks: list[tuple[bool, str]] = [(True, "All evaluation numbers are finite.")]
    same = metrics.get("reference_version") == active_version
    checks.append((same, f"Evaluated against {ref_name}, which is what serves now." if same else
                   f"Evaluated against {ref_name}, but {_name(active_version)} serves now; run a new round."))
    checks.append(_gain_verdict(metrics, ref_name, cfg))
    checks.append(_rm_verdict(metrics, cfg))
    checks.append((c["kl_to_base"] <= cfg.max_kl,
                   f"KL to base {c['kl_to_base']:.2f} nats per answer (limit {cfg.max_kl:.2f})."))
    worse = c["degenerate_fraction"] - r["degenerate_fraction"]
    checks.append((worse <= cfg.max_degenerate_increase + 1e-9,
                   f"Degenerate answers {c['degenerate_fraction']:.0%} vs {r['degenerate_fraction']:.0%} "
                   f"for {ref_name} (may grow by {cfg.max_degenerate_increase:.0%})."))
    promote = all(ok for ok, _ in checks)
    # A rejection lists what failed first; a promotion lists every check it passed.
    reasons = [reason for ok, reason in checks if not ok] + [reason for ok, reason in checks if ok]
    return Decision(promote, reasons)


def _gain_verdict(metrics: dict, ref_name: str, cfg: GateConfig) -> tuple[bool, str]:
    c, r, low, high = metrics["candidate"], metrics["reference"], *metrics["reward_gain_interval"]
    bar, why_bar = _gain_bar(r.get("reward_sd"), ref_name, cfg)
    above = low > bar
    verdict = "." if above else f", so the gain may be noise{' or too small to notice' if why_bar else ''}."
    return above, (f"Mean reward {c['mean_reward']:+.3f} vs {r['mean_reward']:+.3f} for {ref_name}: gain "
                   f"{metrics['reward_gain']:+.3f}, {metrics['interval_confidence']:.0%} interval [{low:+.3f}, "
                   f"{high:+.3f}] over {metrics['eval_prompts']} prompts x {metrics['answers_per_prompt']} answers"
                   f"{_answers_described(metrics)}; "
                   f"its lower end {'is' if above else 'is not'} above {bar:+.3f}{why_bar}"
                   f"{verdict}")


def _answers_described(metrics: dict) -> str:
    """" of up to 256 tokens, sampled by the serving engine", as far as the row says (older rows do not)."""
    limit, by = metrics.get("max_new_tokens"), metrics.get("sampled_by")
    words = ([f"of up to {limit} tokens"] if type(limit) is int else []) + \
        ([f"sampled by the {by}"] if isinstance(by, str) else [])
    return f" {', '.join(words)}" if words else ""


def _gain_bar(spread: float | None, ref_name: str, cfg: GateConfig) -> tuple[float, str]:
    """What the gain's lower end must exceed: the margin, or min_effect_size of the reference's within-prompt
    reward spread (align.evaluate.within_prompt_sd) when that is larger; a row stored before the spread was
    measured, or evaluated with one answer per prompt, has only the margin."""
    effect = cfg.min_effect_size * spread if spread is not None else None
    if effect is None or effect <= cfg.min_reward_margin:
        return cfg.min_reward_margin, ""
    return effect, (f" ({cfg.min_effect_size:g} x the spread of {ref_name}'s rewards between answers to one "
                    f"prompt, {spread:.3f})")


def _rm_verdict(metrics: dict, cfg: GateConfig) -> tuple[bool, str]:
    accuracy, pairs = metrics["rm_accuracy"], metrics["rm_held_out_pairs"]
    if accuracy is None:
        return cfg.min_rm_accuracy <= 0, (f"The reward model had no held-out pairs to measure its accuracy on "
                                          f"(needs at least {cfg.min_rm_accuracy:.1%}).")
    ok = accuracy >= cfg.min_rm_accuracy
    why = "" if ok else "; a reward model near chance cannot tell a better answer"
    return ok, (f"Reward model held-out accuracy {accuracy:.1%} on {pairs} pairs (needs at least "
                f"{cfg.min_rm_accuracy:.1%}{why}).")


def _name(version: int | None) -> str:
    return "the base model" if version is None else f"v{version}"
