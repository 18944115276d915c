"""With answers fixed per prompt, PPO on two processes takes the same steps as one process on the
whole batch: rank 0 rolls out the first half of each batch and rank 1 the second, advantages are
whitened over both halves, gradients are averaged, and beta follows the KL of the whole batch."""

import pytest
import torch
from torch.testing import assert_close

from tests.align.ppo_on_ranks import load, steady
from tests.launch import run_launched

MODULE = ["-m", "tests.align.ppo_on_ranks", "fixed"]


def test_two_ranks_match_one_process(tmp_path):
    one = run_launched([*MODULE, str(tmp_path / "one")], processes=1, timeout=300)
    two = run_launched([*MODULE, str(tmp_path / "two")], processes=2, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    alone, first = load(tmp_path / "one", 0), load(tmp_path / "two", 0)
    second = load(tmp_path / "two", 1)

    assert [a + b for a, b in zip(first["seen"], second["seen"])] == alone["seen"]
    assert all(not torch.equal(w, alone["lora_before"][n]) for n, w in alone["lora"].items() if "lora_B" in n)
    # Batches of different widths are padded differently, so only float noise may differ.
    for name, weight in alone["lora"].items():
        assert_close(first["lora"][name], weight, rtol=1e-4, atol=1e-6)
    assert_close(first["value_head"]["weight"], alone["value_head"]["weight"], rtol=1e-4, atol=1e-6)
    assert steady(first["stats"]) == [pytest.approx(s, rel=1e-4, abs=1e-6) for s in steady(alone["stats"])]
