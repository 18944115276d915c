"""What a candidate's summary must hold for the promotion gate (loop.gate) to judge it: the numbers it
compares, the paired gain with its interval, the reward model's held-out accuracy. A round checks its
summary here before it registers a candidate (align.round.gate_metrics), and the gate checks every row
again before it decides: the two sides of one contract."""

from __future__ import annotations

import math

JUDGED_NUMBERS = {"candidate": ("mean_reward", "kl_to_base", "degenerate_fraction"),
                  "reference": ("mean_reward", "degenerate_fraction")}  # what the gate compares
# What align.round.gate_metrics copies from the evaluation (align.evaluate.compare) beside reward_gain.
GAIN_SUMMARY = ("reward_gain_interval", "interval_confidence", "eval_prompts", "answers_per_prompt")
# Copied when the evaluation has them (older rounds and workers do not): how long its answers could be and
# what sampled them. They only describe the evaluation in the gate's sentences.
EVAL_DESCRIPTION = ("max_new_tokens", "sampled_by")
NO_INTERVAL = "The candidate was evaluated without an interval on its reward gain; run a new round."


def check_metrics(metrics: object) -> list[str]:
    """What makes a candidate's summary (the adapters table's metrics, align.round.gate_metrics)
    unfit for loop.gate.decide(), one sentence each; [] when it can be judged. A round or an upload with such
    metrics is refused before it is registered; the gate rejects an older row that has them."""
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
    return problems + _check_gain_numbers(metrics) + _check_rm_numbers(metrics) + _check_spread(metrics)


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


def _check_spread(metrics: dict) -> list[str]:
    """The reference's reward spread (the gate's unit of a gain that matters) is optional: rows stored before
    it was measured have none, and the gate then reads the absolute margin alone."""
    reference = metrics.get("reference")
    spread = reference.get("reward_sd") if isinstance(reference, dict) else None
    if spread is None or (_is_finite(spread) and spread >= 0):
        return []
    return [f"The reference's reward spread is {spread!r}, not a finite number of at least 0."]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_finite(value: object) -> bool:
    return _is_number(value) and math.isfinite(value)
