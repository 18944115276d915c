"""A reward model at chance must not promote anything: whatever gain it reports, the gate rejects a
candidate whose reward model's held-out pairwise accuracy is below the floor, and says so with the
accuracy and the number of held-out pairs."""

from loop.gate import GateConfig, decide
from tests.loop.test_gate import metrics


def test_a_big_gain_from_a_reward_model_at_chance_is_rejected():
    verdict = decide(metrics(reward=3.0, ref_reward=0.0, half_width=0.5, rm_accuracy=0.5), active_version=None,
                     cfg=GateConfig())
    assert not verdict.promote
    assert verdict.reasons[0] == ("Reward model held-out accuracy 50.0% on 40 pairs (needs at least 60.0%; a reward "
                                  "model near chance cannot tell a better answer).")
    assert "gain +3.000, 95% interval [+2.500, +3.500]" in " ".join(verdict.reasons)


def test_a_reward_model_without_held_out_pairs_promotes_nothing():
    summary = {**metrics(), "rm_accuracy": None, "rm_held_out_pairs": 0}
    verdict = decide(summary, active_version=None, cfg=GateConfig())
    assert not verdict.promote
    assert verdict.reasons[0] == ("The reward model had no held-out pairs to measure its accuracy on (needs at "
                                  "least 60.0%).")
