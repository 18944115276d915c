"""The promotion gate: a candidate adapter replaces the active one only if its evaluation says it is
better. It reads the summary a round stores with the adapter (`adapters.metrics`): the candidate's
and the reference's (the adapter that was active when the round ran, or the base model) mean
reward-model score, KL to the base model and degenerate-answer fraction on held-out prompts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


JUDGED_NUMBERS = {"candidate": ("mean_reward", "kl_to_base", "degenerate_fraction"),
                  "reference": ("mean_reward", "degenerate_fraction")}  # what decide() compares


@dataclass
class GateConfig:
    min_reward_margin: float = field(
        default=0.0,  # any real improvement; raise it when the reward model is noisy
        metadata={"help": "How much higher the candidate's mean reward on held-out prompts must be than the "
                          "active adapter's (reward-model score units)."},
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
    gain = c["mean_reward"] - r["mean_reward"]
    checks.append((gain > cfg.min_reward_margin,
                   f"Mean reward {c['mean_reward']:+.3f} vs {r['mean_reward']:+.3f} for {ref_name}: "
                   f"{gain:+.3f} (needs more than {cfg.min_reward_margin:+.3f})."))
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
    return problems


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _name(version: int | None) -> str:
    return "the base model" if version is None else f"v{version}"
