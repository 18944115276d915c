"""align.candidate_metrics.check_metrics: the numbers the gate compares (the two models' results, the paired gain with
its interval, the reward model's held-out accuracy) must be there, be numbers and be finite;
what is wrong is said in a sentence. decide() rejects such metrics instead of raising."""

import math

from align.candidate_metrics import check_metrics
from loop.gate import GateConfig, decide


def summary(**candidate):
    return {"candidate": {"mean_reward": 0.5, "kl_to_base": 1.0, "degenerate_fraction": 0.0, **candidate},
            "reference": {"mean_reward": 0.2, "degenerate_fraction": 0.0}, "reference_version": None,
            "reward_gain": 0.3, "reward_gain_interval": [0.1, 0.5], "interval_confidence": 0.95, "eval_prompts": 32,
            "answers_per_prompt": 4, "rm_accuracy": 0.7, "rm_held_out_pairs": 40}


def test_complete_metrics_have_no_problems():
    assert check_metrics(summary()) == []
    assert check_metrics({**summary(), "reference_version": 4}) == []


def test_each_problem_is_named():
    assert check_metrics(summary(mean_reward="0.5")) == ["The candidate's mean_reward is '0.5', not a number."]
    assert check_metrics(summary(kl_to_base=True)) == ["The candidate's kl_to_base is True, not a number."]
    assert check_metrics(summary(finite="yes")) == ["The candidate's 'finite' is 'yes', not true or false."]
    assert check_metrics(summary(degenerate_fraction=math.nan)) == ["The evaluation has NaN or infinite numbers."]
    assert check_metrics({**summary(), "reference": "base"}) == ["The evaluation has no reference results."]
    assert check_metrics({**summary(), "reference_version": "2"}) == \
        ["The reference version is '2', not an adapter version or null."]
    assert check_metrics(["not", "a", "dict"]) == ["The candidate's metrics are not a JSON object."]


def test_each_problem_of_the_gain_and_the_reward_model_is_named():
    assert check_metrics({**summary(), "reward_gain": math.inf}) == ["The reward gain is inf, not a finite number."]
    assert check_metrics({**summary(), "reward_gain_interval": [0.5, 0.1]}) == \
        ["The reward gain's interval is [0.5, 0.1], not two finite numbers, low to high."]
    assert check_metrics({**summary(), "interval_confidence": 95}) == \
        ["The interval's confidence is 95, not a fraction between 0 and 1."]
    assert check_metrics({**summary(), "eval_prompts": 1}) == \
        ["The evaluation's eval_prompts is 1, not a whole number of at least 2."]
    assert check_metrics({**summary(), "rm_accuracy": math.nan}) == \
        ["The reward model's accuracy is nan, not a fraction between 0 and 1 or null."]
    assert check_metrics({**summary(), "rm_held_out_pairs": "40"}) == \
        ["The reward model's held-out pair count is '40', not a whole number."]


def test_decide_rejects_malformed_metrics_with_the_reason():
    broken = {**summary(), "reference": {"mean_reward": 0.2, "degenerate_fraction": "0.1"}}
    verdict = decide(broken, active_version=None, cfg=GateConfig())
    assert not verdict.promote
    assert verdict.reasons == ["The reference's degenerate_fraction is '0.1', not a number."]
