"""PPO's progress bar counts towards the steps the time budget will likely allow, not its ceiling of steps:
the steps done, plus as many as finish before the deadline at the pace so far."""

from align.policy import expected_steps


def test_without_a_budget_the_total_is_the_ceiling():
    assert expected_steps(3, 30.0, None, 64) == 64


def test_with_a_budget_the_total_follows_the_pace():
    assert expected_steps(2, 20.0, 95.0, 64) == 11  # 10 s a step: 9 more fit, the tenth would pass the deadline
    assert expected_steps(2, 20.0, -1.0, 64) == 2  # the deadline has passed: this step is the last
    assert expected_steps(2, 20.0, 10_000.0, 64) == 64  # never beyond the ceiling
