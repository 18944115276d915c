"""Rates with 95 % intervals for bench/efficacy.py: answers are clustered by prompt (several samples
each), so intervals come from a bootstrap over prompts, and a before/after difference is paired per
prompt. Wilson's interval over answers is reported beside them for the base rates."""

from __future__ import annotations

import math
import random


def per_prompt_rates(hits: list[list[bool]]) -> list[float]:
    """[prompt][sample] -> the fraction of each prompt's samples that satisfy the rule."""
    return [sum(h) / len(h) for h in hits if h]


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def bootstrap_interval(values: list[float], *, seed: int = 0, resamples: int = 4000) -> tuple[float, float]:
    """Percentile 95 % interval of the mean of `values` (one per prompt), prompts resampled with replacement."""
    if not values:
        return (float("nan"), float("nan"))
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    return (means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1])


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score 95 % interval for k successes in n independent trials."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def rate_summary(hits: list[list[bool]], *, seed: int = 0) -> dict:
    """The rule's satisfaction over every answer, with its prompt-bootstrap and Wilson intervals."""
    rates = per_prompt_rates(hits)
    k, n = sum(map(sum, hits)), sum(map(len, hits))
    return {"rate": mean(rates), "ci95": bootstrap_interval(rates, seed=seed), "wilson95": wilson_interval(k, n),
            "satisfied": k, "answers": n, "prompts": len(rates)}


def paired_difference(after: list[list[bool]], before: list[list[bool]], *, seed: int = 0) -> dict:
    """after - before, per prompt (same prompts in the same order), with its bootstrap 95 % interval."""
    diffs = [a - b for a, b in zip(per_prompt_rates(after), per_prompt_rates(before))]
    return {"difference": mean(diffs), "ci95": bootstrap_interval(diffs, seed=seed), "prompts": len(diffs)}
