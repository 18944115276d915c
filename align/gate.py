"""The promotion gate: a candidate adapter replaces the active one only if its evaluation says it is
better by more than the noise. It reads the summary a round stores with the adapter
(`adapters.metrics`, align.round.gate_metrics): the paired reward gain of the candidate over the
reference (the adapter that was active when the round ran, or the base model) on the same held-out
prompts with its confidence interval, the reward model's own held-out accuracy, and the candidate's
KL to the base model and both degenerate-answer fractions."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


JUDGED_NUMBERS = {"candidate": ("mean_reward", "kl_to_base", "degenerate_fraction"),
                  "reference": ("mean_reward", "degenerate_fraction")}  # what decide() compares
# What align.round.gate_metrics copies from the evaluation (align.evaluate.compare) beside reward_gain.
GAIN_SUMMARY = ("reward_gain_interval", "interval_confidence", "eval_prompts", "answers_per_prompt")
NO_INTERVAL = "The candidate was evaluated without an interval on its reward gain; run a new round."


@dataclass
class GateConfig:
    min_reward_margin: float = field(
        default=0.0,  # any real improvement: the interval already keeps noise out
        metadata={"help": "The lower end of the confidence interval on the candidate's paired reward gain over "
                          "the active adapter (held-out prompts, reward-model score units) must be above this."},
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
        default=0.0,
        metadata={"help": "How much the fraction of empty/repetitive answers may grow over the active "
                          "adapter's (0: not at all)."},
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
    above = low > cfg.min_reward_margin
    return above, (f"Mean reward {c['mean_reward']:+.3f} vs {r['mean_reward']:+.3f} for {ref_name}: gain "
                   f"{metrics['reward_gain']:+.3f}, {metrics['interval_confidence']:.0%} interval [{low:+.3f}, "
                   f"{high:+.3f}] over {metrics['eval_prompts']} prompts x {metrics['answers_per_prompt']} answers; "
                   f"its lower end {'is' if above else 'is not'} above {cfg.min_reward_margin:+.3f}"
                   f"{'.' if above else ', so the gain may be noise.'}")


def _rm_verdict(metrics: dict, cfg: GateConfig) -> tuple[bool, str]:
    accuracy, pairs = metrics["rm_accuracy"], metrics["rm_held_out_pairs"]
    if accuracy is None:
        return cfg.min_rm_accuracy <= 0, (f"The reward model had no held-out pairs to measure its accuracy on "
                                          f"(needs at least {cfg.min_rm_accuracy:.1%}).")
    ok = accuracy >= cfg.min_rm_accuracy
    why = "" if ok else "; a reward model near chance cannot tell a better answer"
    return ok, (f"Reward model held-out accuracy {accuracy:.1%} on {pairs} pairs (needs at least "
                f"{cfg.min_rm_accuracy:.1%}{why}).")


def check_metrics(metrics: object) -> list[str]:
    """What makes a candidate's summary (the adapters table's metrics, align.round.gate_metrics)
    unfit for decide(), one sentence each; [] when it can be judged. A round or an upload with such
    metrics is refused before it is registered; decide() rejects an older row that has them."""
    if not isinstance(metrics, dict):
        return ["The candidate's metrics are not a JSON object."]
    problems = []
    for side, keys in JUDGED_NUMBERS.items():
        part = metrics.get(side)
        if not isinstance(part, dict):
            problems.append(f"The evaluation has no {side} results.")
            continue
        problems += [f"The {side}'s {key} is {part.get(key)!r}, not a number." for key in keys
                     if not _is_number(part.get(key))]
    reference = metrics.get("reference_version")
    if reference is not None and not (type(reference) is int and reference >= 1):
        problems.append(f"The reference version is {reference!r}, not an adapter version or null.")
    flag = metrics["candidate"].get("finite", True) if isinstance(metrics.get("candidate"), dict) else True
    if not isinstance(flag, bool):
        problems.append(f"The candidate's 'finite' is {flag!r}, not true or false.")
    if not problems and (not flag or not all(math.isfinite(metrics[side][key])
                                             for side, keys in JUDGED_NUMBERS.items() for key in keys)):
        problems.append("The evaluation has NaN or infinite numbers.")
    if metrics.get("reward_gain_interval") is None:  # a row stored before the gate read intervals
        return problems + [NO_INTERVAL]
    return problems + _check_gain_numbers(metrics) + _check_rm_numbers(metrics)


def _check_gain_numbers(metrics: dict) -> list[str]:
    problems = []
    gain, interval, confidence = metrics.get("reward_gain"), metrics["reward_gain_interval"], \
        metrics.get("interval_confidence")
    if not _is_finite(gain):
        problems.append(f"The reward gain is {gain!r}, not a finite number.")
    if not (isinstance(interval, list) and len(interval) == 2 and all(map(_is_finite, interval))
            and interval[0] <= interval[1]):
        problems.append(f"The reward gain's interval is {interval!r}, not two finite numbers, low to high.")
    if not (_is_finite(confidence) and 0 < confidence < 1):
        problems.append(f"The interval's confidence is {confidence!r}, not a fraction between 0 and 1.")
    for key, least in (("eval_prompts", 2), ("answers_per_prompt", 1)):
        value = metrics.get(key)
        if not (type(value) is int and value >= least):
            problems.append(f"The evaluation's {key} is {value!r}, not a whole number of at least {least}.")
    return problems


def _check_rm_numbers(metrics: dict) -> list[str]:
    accuracy, pairs = metrics.get("rm_accuracy"), metrics.get("rm_held_out_pairs")
    problems = []
    if not (accuracy is None or (_is_finite(accuracy) and 0 <= accuracy <= 1)):
        problems.append(f"The reward model's accuracy is {accuracy!r}, not a fraction between 0 and 1 or null.")
    if not (type(pairs) is int and pairs >= 0):
        problems.append(f"The reward model's held-out pair count is {pairs!r}, not a whole number.")
    return problems


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_finite(value: object) -> bool:
    return _is_number(value) and math.isfinite(value)


def _name(version: int | None) -> str:
    return "the base model" if version is None else f"v{version}"
