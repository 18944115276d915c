"""The promotion gate: a candidate adapter replaces the active one only if its evaluation says it is
better. It reads the summary a round stores with the adapter (`adapters.metrics`): the candidate's
and the reference's (the adapter that was active when the round ran, or the base model) mean
reward-model score, KL to the base model and degenerate-answer fraction on held-out prompts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


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
    c, r = metrics.get("candidate"), metrics.get("reference")
    if not c or not r:
        return Decision(False, ["The candidate has no evaluation to judge it by."])
    ref_name = _name(metrics.get("reference_version"))
    checks: list[tuple[bool, str]] = []
    numbers = [c.get(k) for k in ("mean_reward", "kl_to_base", "degenerate_fraction")] + [r.get("mean_reward")]
    finite = c.get("finite", True) and all(isinstance(x, (int, float)) and math.isfinite(x) for x in numbers)
    checks.append((finite, "All evaluation numbers are finite." if finite
                   else "The evaluation has NaN or infinite numbers."))
    if not finite:
        return Decision(False, [reason for ok, reason in checks if not ok])
    same = metrics.get("reference_version") == active_version
    checks.append((same, f"Evaluated against {ref_name}, which is what serves now." if same else
                   f"Evaluated against {ref_name}, but {_name(active_version)} serves now; run a new round."))
    gain = c["mean_reward"] - r["mean_reward"]
    checks.append((gain > cfg.min_reward_margin,
                   f"Mean reward {c['mean_reward']:+.3f} vs {r['mean_reward']:+.3f} for {ref_name}: "
                   f"{gain:+.3f} (needs more than {cfg.min_reward_margin:+.3f})."))
    checks.append((c["kl_to_base"] <= cfg.max_kl,
                   f"KL to base {c['kl_to_base']:.2f} nats per answer (limit {cfg.max_kl:.2f})."))
    worse = c["degenerate_fraction"] - r.get("degenerate_fraction", 0.0)
    checks.append((worse <= cfg.max_degenerate_increase + 1e-9,
                   f"Degenerate answers {c['degenerate_fraction']:.0%} vs {r.get('degenerate_fraction', 0.0):.0%} "
                   f"for {ref_name} (may grow by {cfg.max_degenerate_increase:.0%})."))
    promote = all(ok for ok, _ in checks)
    # A rejection lists what failed first; a promotion lists every check it passed.
    reasons = [reason for ok, reason in checks if not ok] + [reason for ok, reason in checks if ok]
    return Decision(promote, reasons)


def _name(version: int | None) -> str:
    return "the base model" if version is None else f"v{version}"
