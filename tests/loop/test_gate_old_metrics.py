"""A candidate stored before the gate read intervals (one answer per prompt, no interval on the gain)
is rejected with a sentence that says what to do, never with a crash; so is an upload of such metrics."""

from align.candidate_metrics import NO_INTERVAL, check_metrics
from loop.gate import GateConfig, decide

OLD_ROW = {"candidate": {"mean_reward": 0.5, "kl_to_base": 1.0, "degenerate_fraction": 0.0},
           "reference": {"mean_reward": 0.2, "degenerate_fraction": 0.0}, "reference_version": None,
           "reward_gain": 0.3, "rm_accuracy": 0.7}


def test_metrics_without_an_interval_are_rejected_with_a_sentence():
    assert NO_INTERVAL == "The candidate was evaluated without an interval on its reward gain; run a new round."
    assert check_metrics(OLD_ROW) == [NO_INTERVAL]
    assert decide(OLD_ROW, active_version=None, cfg=GateConfig()).reasons == [NO_INTERVAL]
    assert not decide(OLD_ROW, active_version=None, cfg=GateConfig()).promote
