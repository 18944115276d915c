"""serving.cpu_lora_ops.add_lora_linear (a whole LoRA linear layer in one call) against vLLM's own
PunicaWrapperCPU.add_lora_linear with vLLM's ops: the same output for every token on an adapter, no
delta for base-model tokens or for tokens on a skipped (merged) slot, only each slot's used rank
read, for a packed layer of three slices (qkv) and a plain one, in float32 and bfloat16."""

import pytest
import torch

from serving import cpu_lora_ops as ours

try:  # a failure, not a skip, if vLLM moves the reference
    from vllm.lora.punica_wrapper.punica_cpu import PunicaWrapperCPU
except ImportError as e:
    raise ImportError(f"vLLM's CPU punica wrapper, the reference these tests compare against, moved: {e}.") from e

HIDDEN, MAX_RANK, SLOTS = 24, 16, 3
BATCHES = {  # (tokens per sequence, adapter slot per sequence; -1 = base model)
    "one adapter": ([7], [0]),
    "mixed": ([2, 3, 1, 1], [0, -1, 2, 1]),
    "two adapters": ([3, 4], [2, 0]),
    "base and a decode token": ([5, 1], [-1, 1]),
    "interleaved decode": ([1] * 7, [0, -1, 0, 1, -1, 1, 0]),  # after a swap: versions alternate token by token
}
LAYERS = {"packed qkv": (40, 8, 8), "plain": (40,)}


def wrapper(lens, slots):
    """vLLM's wrapper with this batch's metadata, as vLLM's v1 runner sets it (always the prefill form)."""
    w = PunicaWrapperCPU(max_num_batched_tokens=64, max_batches=8, device="cpu")
    per_token = torch.repeat_interleave(torch.tensor(slots), torch.tensor(lens))
    w._token_lora_indices[: per_token.shape[0]].copy_(per_token)
    w.indices_len = [per_token.shape[0]] * 4
    w._update_prefill_metadata(per_token)
    w.is_prefill = True
    return w, per_token


def stacked(output_slices, dtype):
    torch.manual_seed(0)
    a = tuple(torch.randn(SLOTS, 1, MAX_RANK, HIDDEN).to(dtype) for _ in output_slices)
    b = tuple(torch.randn(SLOTS, 1, size, MAX_RANK).to(dtype) for size in output_slices)
    return a, b


@pytest.fixture(autouse=True)
def clean_state():
    yield
    ours.SKIP_SLOTS, ours.SLOT_RANKS = frozenset(), {}


def run_both(batch, layer, dtype, scale=1.0):
    w, per_token = wrapper(*(BATCHES[batch] if isinstance(batch, str) else batch))
    slices = LAYERS[layer]
    a, b = stacked(slices, dtype)
    x = torch.randn(per_token.shape[0], HIDDEN).to(dtype)
    before = torch.randn(per_token.shape[0], sum(slices)).to(dtype)
    expected, got = before.clone(), before.clone()
    PunicaWrapperCPU.add_lora_linear(w, expected, x, a, b, scale, slices)
    ours.add_lora_linear(w, got, x, a, b, scale, slices)
    return per_token, before, expected, got, (x, a, b, slices)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layer", list(LAYERS))
@pytest.mark.parametrize("batch", list(BATCHES))
def test_adapter_tokens_match_vllm_and_base_tokens_get_no_delta(batch, layer, dtype):
    per_token, before, expected, got, _ = run_both(batch, layer, dtype, scale=0.5)
    on_adapter = per_token >= 0
    tolerance = {} if dtype == torch.float32 else {"atol": 0.1, "rtol": 0.02}
    torch.testing.assert_close(got[on_adapter], expected[on_adapter], **tolerance)
    assert torch.equal(got[~on_adapter], before[~on_adapter])  # vLLM's own op gives them the last slot's


def test_skipped_slots_get_no_delta_and_used_ranks_are_respected():
    """A merged slot adds nothing; a slot whose adapter uses rank 4 reads only 4 rows of A and
    columns of B (vLLM pads the rest with zeros; here they hold garbage that must not be read)."""
    ours.SKIP_SLOTS, ours.SLOT_RANKS = frozenset({2}), {0: 4, 1: 16}
    batch = ([1] * 8, [0, 2, 0, 1, -1, 1, 2, 0])  # slot 2 merged, interleaved with the others
    per_token, before, _, got, (x, a, b, slices) = run_both(batch, "packed qkv", torch.float32)
    offset, want = 0, before.clone()
    for a_s, b_s, size in zip(a, b, slices):
        for token, slot in enumerate(per_token.tolist()):
            if slot in (0, 1):
                rank = ours.SLOT_RANKS[slot]
                want[token, offset: offset + size] += (x[token] @ a_s[slot, 0, :rank].T) @ b_s[slot, 0, :, :rank].T
        offset += size
    torch.testing.assert_close(got, want)
    untouched = (per_token < 0) | (per_token == 2)
    assert untouched.sum() == 3 and torch.equal(got[untouched], before[untouched])


def test_a_step_without_lora_tokens_changes_nothing():
    w, per_token = wrapper([6], [-1])
    assert w.no_lora
    slices = LAYERS["packed qkv"]
    a, b = stacked(slices, torch.float32)
    y = torch.randn(per_token.shape[0], sum(slices))
    before = y.clone()
    ours.add_lora_linear(w, y, torch.randn(per_token.shape[0], HIDDEN), a, b, 1.0, slices)
    assert torch.equal(y, before)


def test_shapes_it_does_not_know_go_to_vllm(monkeypatch):
    """More rows than the batch's tokens (padding): vLLM's own function handles them."""
    w, per_token = wrapper([3], [0])
    slices = LAYERS["plain"]
    a, b = stacked(slices, torch.float32)
    called = []
    monkeypatch.setitem(ours.ORIGINAL, "add_lora_linear", lambda *args, **kw: called.append(args))
    ours.add_lora_linear(w, torch.zeros(5, sum(slices)), torch.randn(5, HIDDEN), a, b, 1.0, slices)
    assert len(called) == 1


def test_a_slot_loaded_with_new_weights_is_computed_with_them():
    """The per-slot weights are kept between steps; vLLM loading another adapter into the slot
    (an in-place copy into its stacked tensors, as set_lora does) must be seen at the next step."""
    w, per_token = wrapper([4], [1])
    slices = LAYERS["packed qkv"]
    a, b = stacked(slices, torch.float32)
    x = torch.randn(per_token.shape[0], HIDDEN)
    first = torch.zeros(per_token.shape[0], sum(slices))
    ours.add_lora_linear(w, first, x, a, b, 1.0, slices)
    a[0][1, 0].copy_(torch.randn(MAX_RANK, HIDDEN))  # a view's copy: vLLM's set_lora
    b[2][1, 0].copy_(torch.randn(slices[2], MAX_RANK))
    expected, got = torch.zeros_like(first), torch.zeros_like(first)
    PunicaWrapperCPU.add_lora_linear(w, expected, x, a, b, 1.0, slices)
    ours.add_lora_linear(w, got, x, a, b, 1.0, slices)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, first)
