"""serving.cpu_lora_ops.add_lora_linear (a whole LoRA linear layer in two matmuls per run of tokens,
in float32) against vLLM's own PunicaWrapperCPU.add_lora_linear on vLLM's torch ops: the same
delta on every adapter token of a batch that mixes slots, base-model tokens and a merged (skipped)
slot; none for the others; the slot's used rank only; weights read again after vLLM rewrites a
slot in place; and bfloat16 layers computed in float32."""

import pytest
import torch
from vllm.lora.ops.torch_ops import lora_ops as ref_ops
from vllm.lora.punica_wrapper import punica_cpu

from serving import cpu_lora_ops as ours

HIDDEN, PADDED, SLOTS = 24, 16, 3
SIZES = (40, 8, 8)  # three slices of different widths, like a qkv layer
USED = {0: 5, 1: 16, 2: 3}  # slot -> rank its adapter uses; the rest of the padded rank is zeros
LENS, SEQ_SLOTS = [2, 3, 1, 4, 2], [0, -1, 2, 1, 0]


def vllm_add_lora_linear():
    own = punica_cpu.PunicaWrapperCPU.add_lora_linear
    return ours.ORIGINAL["add_lora_linear"] if own is ours.add_lora_linear else own


@pytest.fixture(autouse=True)
def vllm_ops(monkeypatch):
    """vLLM's own torch ops under its wrapper (another test may have installed ours), our globals clean."""
    for name in ours.OPS:
        monkeypatch.setattr(punica_cpu, name, getattr(ref_ops, name) if getattr(ref_ops, name) is not ours.OPS[name]
                            else ours.ORIGINAL[name])
    monkeypatch.setattr(ours, "SKIP_SLOTS", frozenset())
    monkeypatch.setattr(ours, "SLOT_RANKS", {})


def wrapper(lens=LENS, slots=SEQ_SLOTS):
    w = punica_cpu.PunicaWrapperCPU(64, 8, device="cpu")
    per_token = torch.repeat_interleave(torch.tensor(slots), torch.tensor(lens))
    w._token_lora_indices[: per_token.shape[0]].copy_(per_token)
    w.indices_len = [per_token.shape[0], None, None, None]
    w._update_prefill_metadata(per_token)
    w.is_prefill = True
    return w, per_token


def stacked(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    a = tuple(torch.zeros(SLOTS, 1, PADDED, HIDDEN, dtype=dtype) for _ in SIZES)
    b = tuple(torch.zeros(SLOTS, 1, size, PADDED, dtype=dtype) for size in SIZES)
    for slot, rank in USED.items():
        for a_i, b_i in zip(a, b):
            a_i[slot, 0, :rank] = torch.randn(rank, HIDDEN, dtype=dtype)
            b_i[slot, 0, :, :rank] = torch.randn(b_i.shape[2], rank, dtype=dtype)
    return a, b


def both(a, b, scale=0.5, dtype=torch.float32, w=None):
    w, per_token = w or wrapper()
    x = torch.randn(per_token.shape[0], HIDDEN, dtype=dtype)
    before = torch.randn(per_token.shape[0], sum(SIZES), dtype=dtype)
    expected, got = before.clone(), before.clone()
    vllm_add_lora_linear()(w, expected, x, a, b, scale, SIZES)
    ours.add_lora_linear(w, got, x, a, b, scale, SIZES)
    return per_token, before, expected, got


@pytest.mark.parametrize("ranks", [{}, USED], ids=["padded rank", "used rank"])
def test_adapter_tokens_get_vllms_delta_and_base_tokens_none(monkeypatch, ranks):
    monkeypatch.setattr(ours, "SLOT_RANKS", ranks)
    per_token, before, expected, got = both(*stacked())
    on_adapter = per_token >= 0
    torch.testing.assert_close(got[on_adapter], expected[on_adapter])
    assert torch.equal(got[~on_adapter], before[~on_adapter])


def test_a_merged_slot_adds_nothing(monkeypatch):
    monkeypatch.setattr(ours, "SKIP_SLOTS", frozenset({0}))
    per_token, before, expected, got = both(*stacked())
    other = (per_token == 1) | (per_token == 2)
    torch.testing.assert_close(got[other], expected[other])
    assert torch.equal(got[per_token == 0], before[per_token == 0])


def test_a_step_without_lora_changes_nothing():
    w, _ = wrapper(slots=[-1] * len(LENS))
    assert w.no_lora
    _, before, _, got = both(*stacked(), w=(w, torch.full((sum(LENS),), -1)))
    assert torch.equal(got, before)


def test_a_slot_rewritten_in_place_is_read_again():
    a, b = stacked()
    both(a, b)  # the float32 copies of every slot are made here
    a[0][1, 0, :4].copy_(torch.randn(4, HIDDEN))  # as vLLM loads another adapter into slot 1
    b[2][1, 0, :, :4].copy_(torch.randn(SIZES[2], 4))
    per_token, _, expected, got = both(a, b)
    torch.testing.assert_close(got[per_token == 1], expected[per_token == 1])


def test_bfloat16_layers_are_computed_in_float32():
    a, b = stacked(torch.bfloat16)
    w, per_token = wrapper()
    x = torch.randn(per_token.shape[0], HIDDEN, dtype=torch.bfloat16)
    before = torch.randn(per_token.shape[0], sum(SIZES), dtype=torch.bfloat16)
    got = before.clone()
    ours.add_lora_linear(w, got, x, a, b, 1.0, SIZES)
    exact = before.double()
    for row, slot in enumerate(per_token.tolist()):
        if slot < 0:
            continue
        offset = 0
        for a_i, b_i, size in zip(a, b, SIZES):
            exact[row, offset: offset + size] += x[row].double() @ a_i[slot, 0].double().T @ b_i[slot, 0].double().T
            offset += size
    # One rounding to bfloat16 at the end: within half a bfloat16 step of the exact sum.
    torch.testing.assert_close(got.double(), exact.to(torch.bfloat16).double(), rtol=2 ** -8, atol=1e-2)
