"""PPO on two processes (`accelerate launch`, CPU, gloo): each rank rolls out its own half of every
batch, and both end with the same trained LoRA and value-head weights and the same statistics."""

import torch

from tests.align.ppo_on_ranks import load, steady
from tests.launch import run_launched


def test_two_ranks_train_identical_weights_on_their_own_halves(tmp_path):
    run = run_launched(["-m", "tests.align.ppo_on_ranks", "sampled", str(tmp_path)], processes=2, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    first, second = load(tmp_path, 0), load(tmp_path, 1)

    assert first["world_size"] == second["world_size"] == 2
    for a, b in zip(first["seen"], second["seen"]):  # one batch of 4 distinct prompts per step, split in two
        assert len(a) == len(b) == 2 and not {tuple(p) for p in a} & {tuple(p) for p in b}
    assert first["lora"].keys() == second["lora"].keys()
    assert all(torch.equal(first["lora"][n], second["lora"][n]) for n in first["lora"])
    assert all(torch.equal(first["value_head"][n], second["value_head"][n]) for n in first["value_head"])
    assert all(not torch.equal(first["lora"][n], first["lora_before"][n]) for n in first["lora"] if "lora_B" in n)
    assert steady(first["stats"]) == steady(second["stats"])  # reward, KL, beta, losses: reduced over ranks
