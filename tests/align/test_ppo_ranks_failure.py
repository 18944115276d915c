"""A rank that fails ends the whole launch with its error, at once: the other rank is not left
waiting in a collective operation until its timeout."""

import time

from tests.align.ppo_on_ranks import RANK_TIMEOUT_S
from tests.launch import run_launched


def test_a_failing_rank_stops_every_rank(tmp_path):
    started = time.monotonic()
    run = run_launched(["-m", "tests.align.ppo_on_ranks", "fail", str(tmp_path)], processes=2, timeout=300)
    elapsed = time.monotonic() - started

    assert run.returncode != 0
    assert "rank 1 fails on purpose in its second step" in run.stdout + run.stderr
    assert not list(tmp_path.glob("rank*.pt"))  # neither rank finished training
    assert elapsed < RANK_TIMEOUT_S, elapsed
