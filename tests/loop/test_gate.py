"""Promotion gate decisions on crafted evaluation metrics."""

import math

import pytest

from loop.gate import GateConfig, decide

CFG = GateConfig(min_reward_margin=0.05, max_kl=5.0, max_degenerate_increase=0.0)


def metrics(*, reward=0.5, ref_reward=0.2, half_width=0.1, rm_accuracy=0.75, kl=1.0, degenerate=0.1,
            ref_degenerate=0.1, ref_version=None, finite=True, ref_sd=None):
    """What align.round.gate_metrics stores: the gain is reward - ref_reward, its interval gain +- half_width."""
    gain = reward - ref_reward
    return {
        "candidate": {"mean_reward": reward, "kl_to_base": kl, "degenerate_fraction": degenerate,
                      "finite": finite},
        "reference": {"mean_reward": ref_reward, "kl_to_base": 0.0, "degenerate_fraction": ref_degenerate,
                      **({} if ref_sd is None else {"reward_sd": ref_sd})},
        "reference_version": ref_version,
        "reward_gain": gain, "reward_gain_interval": [gain - half_width, gain + half_width],
        "interval_confidence": 0.95, "eval_prompts": 32, "answers_per_prompt": 4,
        "rm_accuracy": rm_accuracy, "rm_held_out_pairs": 40,
    }


def test_a_better_candidate_is_promoted_and_every_check_is_explained():
    verdict = decide(metrics(), active_version=None, cfg=CFG)
    assert verdict.promote
    assert len(verdict.reasons) == 6
    assert "[+0.200, +0.400] over 32 prompts x 4 answers; its lower end is above +0.050." in " ".join(verdict.reasons)


@pytest.mark.parametrize("change, reason", [
    (dict(reward=0.24, half_width=0.0), "its lower end is not above +0.050"),
    (dict(reward=0.1), "gain -0.100"),
    (dict(rm_accuracy=0.55), "Reward model held-out accuracy 55.0% on 40 pairs (needs at least 60.0%"),
    (dict(kl=5.5), "KL to base 5.50 nats per answer (limit 5.00)"),
    (dict(degenerate=0.2), "Degenerate answers 20% vs 10%"),
    (dict(ref_version=3), "Evaluated against v3, but the base model serves now"),
])
def test_one_failing_check_rejects_and_is_named_first(change, reason):
    verdict = decide(metrics(**change), active_version=None, cfg=CFG)
    assert not verdict.promote
    assert reason in verdict.reasons[0]


@pytest.mark.parametrize("change", [dict(reward=math.nan), dict(kl=math.inf), dict(finite=False)])
def test_nan_or_inf_anywhere_rejects(change):
    verdict = decide(metrics(**change), active_version=None, cfg=CFG)
    assert (verdict.promote, verdict.reasons[0]) == (False, "The evaluation has NaN or infinite numbers.")


def test_the_candidate_is_compared_with_the_adapter_that_serves():
    assert decide(metrics(ref_version=2), active_version=2, cfg=CFG).promote
    assert not decide(metrics(ref_version=None), active_version=2, cfg=CFG).promote


def test_tolerances_come_from_the_config():
    loose = GateConfig(min_reward_margin=-1.0, min_rm_accuracy=0.5, max_kl=100.0, max_degenerate_increase=0.5)
    assert decide(metrics(reward=0.1, rm_accuracy=0.5, kl=50.0, degenerate=0.4), active_version=None, cfg=loose).promote


def test_no_evaluation_is_no_promotion():
    verdict = decide({}, active_version=None, cfg=CFG)
    assert not verdict.promote and "no evaluation" in verdict.reasons[0]


def test_a_real_but_tiny_gain_is_not_promoted():
    """The DPO candidate of BENCHMARKS.md: KL 0.07, gain +0.110 [+0.014, +0.207], answers' spread ~1; the
    interval rules out noise but not a gain nobody would notice."""
    tiny = metrics(reward=0.110, ref_reward=0.0, half_width=0.096, kl=0.07, ref_sd=1.0)
    verdict = decide(tiny, active_version=None, cfg=GateConfig())
    assert not verdict.promote
    assert ("its lower end is not above +0.100 (0.1 x the spread of the base model's rewards between answers to "
            "one prompt, 1.000), so the gain may be noise or too small to notice.") in verdict.reasons[0]
    big = metrics(reward=0.554, ref_reward=0.0, half_width=0.2, ref_sd=1.0)
    assert decide(big, active_version=None, cfg=GateConfig()).promote


def test_the_margin_holds_where_the_spread_is_small_or_unknown():
    # 0.1 x 0.2 = 0.02 is below the margin 0.05: the margin is the bar, as for a row stored without a spread.
    for sd in (0.2, None):
        verdict = decide(metrics(reward=0.24, ref_reward=0.2, half_width=0.0, ref_sd=sd), active_version=None, cfg=CFG)
        assert not verdict.promote
        assert "its lower end is not above +0.050, so the gain may be noise." in verdict.reasons[0]
    assert decide(metrics(ref_sd=0.2), active_version=None, cfg=CFG).promote


@pytest.mark.parametrize("sd", [-0.1, math.nan, "wide"])
def test_a_malformed_spread_rejects(sd):
    verdict = decide(metrics(ref_sd=sd), active_version=None, cfg=CFG)
    assert not verdict.promote and "reward spread" in verdict.reasons[0]
