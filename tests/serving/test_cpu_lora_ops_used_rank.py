"""vLLM pads every adapter to --max-lora-rank with zeros; the CPU ops compute each slot over the rank
its adapter uses (SLOT_RANKS) and still give vLLM's result, through shrink and expand, on a batch
that mixes adapters of different ranks and base-model tokens."""

import pytest
import torch
from vllm.lora.ops.torch_ops import lora_ops as ref

from serving import cpu_lora_ops as ours

HIDDEN, PADDED, OUT = 24, 16, 40
USED = {0: 3, 1: 16, 2: 5}  # slot -> rank its adapter uses; the rest of the padded rank is zeros
LENS, SLOTS = [2, 3, 1, 4], [0, -1, 2, 1]


def padded_weights():
    torch.manual_seed(0)
    a, b = torch.zeros(3, 1, PADDED, HIDDEN), torch.zeros(3, 1, OUT, PADDED)
    for slot, rank in USED.items():
        a[slot, 0, :rank] = torch.randn(rank, HIDDEN)
        b[slot, 0, :, :rank] = torch.randn(OUT, rank)
    return a, b


@pytest.mark.parametrize("ops_rank", [{}, USED], ids=["padded", "used rank"])
def test_shrink_then_expand_equals_vllm(monkeypatch, ops_rank):
    monkeypatch.setattr(ours, "SLOT_RANKS", ops_rank)
    lora_a, lora_b = padded_weights()
    lens, slots = torch.tensor(LENS), torch.tensor(SLOTS)
    starts = torch.cumsum(torch.tensor([0] + LENS[:-1]), 0)
    meta = (starts, lens, slots, len(LENS), max(LENS), sum(LENS))
    x = torch.randn(sum(LENS), HIDDEN)
    before = torch.randn(sum(LENS), OUT)

    shrunk_ref, shrunk = torch.zeros(sum(LENS), PADDED), torch.randn(sum(LENS), PADDED)  # garbage to overwrite
    ref.sgmv_shrink(x, lora_a, shrunk_ref, *meta, 0.5)
    ours.sgmv_shrink(x, lora_a, shrunk, *meta, 0.5)
    expected, got = before.clone(), before.clone()
    ref.sgmv_expand(shrunk_ref, lora_b, expected, *meta, True)
    ours.sgmv_expand(shrunk, lora_b, got, *meta, True)

    on_adapter = torch.repeat_interleave(slots, lens) >= 0
    torch.testing.assert_close(got[on_adapter], expected[on_adapter])
    assert torch.equal(got[~on_adapter], before[~on_adapter])
