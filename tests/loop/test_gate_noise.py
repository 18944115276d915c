"""The gate promotes on the lower end of the interval on the paired reward gain, not on the gain alone:
a gain whose interval reaches down to the margin may be noise and is rejected; a clear one is promoted.
The decision's sentences carry every number they were judged on."""

from loop.gate import GateConfig, decide
from tests.loop.test_gate import metrics


def test_a_gain_whose_interval_includes_the_margin_is_rejected_as_noise():
    verdict = decide(metrics(reward=0.5, ref_reward=0.2, half_width=0.35), active_version=None, cfg=GateConfig())
    assert not verdict.promote
    assert verdict.reasons[0] == ("Mean reward +0.500 vs +0.200 for the base model: gain +0.300, 95% interval "
                                  "[-0.050, +0.650] over 32 prompts x 4 answers; its lower end is not above +0.000, "
                                  "so the gain may be noise.")


def test_a_clear_gain_is_promoted_with_every_number_in_its_reasons():
    verdict = decide(metrics(reward=0.5, ref_reward=0.2, half_width=0.1), active_version=None, cfg=GateConfig())
    assert verdict.promote
    assert verdict.reasons == [
        "All evaluation numbers are finite.",
        "Evaluated against the base model, which is what serves now.",
        "Mean reward +0.500 vs +0.200 for the base model: gain +0.300, 95% interval [+0.200, +0.400] over "
        "32 prompts x 4 answers; its lower end is above +0.000.",
        "Reward model held-out accuracy 75.0% on 40 pairs (needs at least 60.0%).",
        "KL to base 1.00 nats per answer (limit 10.00).",
        "Degenerate answers 10% vs 10% for the base model (may grow by 5%).",
    ]
