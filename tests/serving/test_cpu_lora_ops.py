"""serving.cpu_lora_ops against vLLM's own torch LoRA ops: the same delta for every token on an
adapter, none for base-model tokens (where vLLM's op wrongly applies the last slot), for the
per-token (bgmv) and per-sequence (sgmv) forms, in a batch on one adapter, on none, and mixed."""

import pytest
import torch

from serving import cpu_lora_ops as ours

try:  # a failure, not a skip: 42 tests must not vanish silently if vLLM moves its reference ops
    from vllm.lora.ops.torch_ops import lora_ops as ref
except ImportError as e:
    raise ImportError(f"vLLM's torch LoRA ops, the reference these tests compare against, moved: {e}. "
                      "Point this import at their new module.") from e

HIDDEN, RANK, SLOTS, OUT = 24, 8, 3, 40
BATCHES = {  # (tokens per sequence, adapter slot per sequence; -1 = base model)
    "one adapter": ([7], [0]),
    "base only": ([7], [-1]),
    "mixed": ([2, 3, 1, 1], [0, -1, 2, 1]),
    "two adapters": ([3, 4], [2, 0]),
}


def metadata(kind, lens, slots):
    lens_t, slots_t = torch.tensor(lens), torch.tensor(slots)
    per_token = torch.repeat_interleave(slots_t, lens_t)
    if kind == "bgmv":
        return per_token, (per_token,)
    starts = torch.cumsum(torch.tensor([0] + lens[:-1]), 0)
    return per_token, (starts, lens_t, slots_t, len(lens), max(lens), sum(lens))


@pytest.fixture
def weights():
    torch.manual_seed(0)
    return torch.randn(SLOTS, 1, RANK, HIDDEN), torch.randn(SLOTS, 1, OUT, RANK)


@pytest.mark.parametrize("kind", ["bgmv", "sgmv"])
@pytest.mark.parametrize("batch", list(BATCHES))
def test_shrink_matches_vllm_on_adapter_tokens_and_is_zero_on_base_tokens(kind, batch, weights):
    lora_a, _ = weights
    per_token, meta = metadata(kind, *BATCHES[batch])
    on_adapter = per_token >= 0
    x = torch.randn(per_token.shape[0], HIDDEN)
    expected, got = torch.randn(x.shape[0], RANK), torch.randn(x.shape[0], RANK)  # garbage must be overwritten
    getattr(ref, f"{kind}_shrink")(x, lora_a, expected, *meta, 0.5)
    getattr(ours, f"{kind}_shrink")(x, lora_a, got, *meta, 0.5)
    torch.testing.assert_close(got[on_adapter], expected[on_adapter])
    assert (got[~on_adapter] == 0).all()


@pytest.mark.parametrize("kind", ["bgmv", "sgmv"])
@pytest.mark.parametrize("batch", list(BATCHES))
@pytest.mark.parametrize("add_inputs", [True, False])
@pytest.mark.parametrize("form", ["expand", "expand_slice"])
def test_expand_matches_vllm_on_adapter_tokens_and_leaves_base_tokens(kind, batch, add_inputs, form, weights):
    _, lora_b = weights
    per_token, meta = metadata(kind, *BATCHES[batch])
    on_adapter = per_token >= 0
    shrunk = torch.randn(per_token.shape[0], RANK)
    width, extra = (OUT, ()) if form == "expand" else (100, (30, OUT))  # a slice at offset 30
    before = torch.randn(per_token.shape[0], width)
    expected, got = before.clone(), before.clone()
    getattr(ref, f"{kind}_{form}")(shrunk, lora_b, expected, *meta, *extra, add_inputs)
    getattr(ours, f"{kind}_{form}")(shrunk, lora_b, got, *meta, *extra, add_inputs)
    torch.testing.assert_close(got[on_adapter], expected[on_adapter])
    if add_inputs:  # a base token gets no delta at all
        assert torch.equal(got[~on_adapter], before[~on_adapter])


def test_runs_are_recomputed_when_vllm_writes_the_next_steps_indices():
    buffer = torch.tensor([0, 0, 1, 1, -1, -1])  # like the punica wrapper's persistent index buffer
    assert ours.runs_of_tokens(buffer[:4]) == [(0, 2, 0), (2, 4, 1)]
    buffer[:4].copy_(torch.tensor([1, -1, -1, 0]))  # the next step, written in place
    assert ours.runs_of_tokens(buffer[:4]) == [(0, 1, 1), (1, 3, -1), (3, 4, 0)]


def test_install_replaces_the_ops_vllm_calls_on_cpu():
    from vllm.lora.punica_wrapper import punica_cpu

    originals = {name: getattr(ref, name) for name in ours.OPS}
    layer = punica_cpu.PunicaWrapperCPU.add_lora_linear
    try:
        ours.install()
        ours.install()  # idempotent: the originals stay vLLM's
        for name, op in ours.OPS.items():
            assert getattr(ref, name) is op and getattr(punica_cpu, name) is op
            assert ours.ORIGINAL[name] is originals[name]
        assert punica_cpu.PunicaWrapperCPU.add_lora_linear is ours.add_lora_linear
        assert ours.ORIGINAL["add_lora_linear"] is layer and ours.installed()
    finally:  # the rest of this pytest process compares against vLLM's own ops
        for name, op in originals.items():
            setattr(ref, name, op)
            setattr(punica_cpu, name, op)
        punica_cpu.PunicaWrapperCPU.add_lora_linear = layer
