"""When rank 0 of a launched worker cannot start the round (here: no app at --server), every rank
stops at once with rank 0's sentence, instead of waiting for a round that will not come."""

import time

from bench.common import free_port
from tests.launch import run_launched


def test_every_rank_stops_with_rank_0s_reason(tmp_path):
    started = time.monotonic()
    run = run_launched(["-m", "align", "worker", "--server", f"http://127.0.0.1:{free_port()}",
                        "--work-dir", str(tmp_path), "--rank-timeout-s", "120"], processes=2, timeout=300)
    elapsed = time.monotonic() - started

    assert run.returncode != 0
    assert "The app could not be reached" in run.stderr
    assert "Rank 0 stopped the round: The app could not be reached" in run.stderr  # rank 1's line
    assert elapsed < 120, elapsed
