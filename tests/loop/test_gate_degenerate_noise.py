"""On its default settings the gate tolerates one odd answer among the evaluation's but not a collapse:
the degenerate-answer fraction may grow by 5 points (1 of 32 answers empty: promoted; 1 in 10: rejected)."""

from loop.gate import GateConfig, decide
from tests.loop.test_gate import metrics


def test_one_degenerate_answer_in_32_is_noise():
    verdict = decide(metrics(degenerate=1 / 32, ref_degenerate=0.0), active_version=None, cfg=GateConfig())
    assert verdict.promote, verdict.reasons
    assert "Degenerate answers 3% vs 0% for the base model (may grow by 5%)." in verdict.reasons


def test_a_collapse_into_degenerate_answers_is_rejected():
    verdict = decide(metrics(degenerate=0.1, ref_degenerate=0.0), active_version=None, cfg=GateConfig())
    assert not verdict.promote
    assert verdict.reasons[0] == "Degenerate answers 10% vs 0% for the base model (may grow by 5%)."
