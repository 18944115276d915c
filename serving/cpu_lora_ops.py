"""Faster and correct replacements for vLLM's torch LoRA ops, which its CPU path runs.

vLLM's `vllm/lora/ops/torch_ops` computes a LoRA by gathering one whole adapter matrix per token
(`weights[indices]`: tokens x rank x hidden, the rank padded to `--max-lora-rank`) and an einsum
over it, about 400 times per decode step. On a 2-core CPU that costs more than the model itself:
16 streams on a rank-16 adapter decoded 12 tokens/s against 27 without one. It also has a bug: a
base-model token's slot index -1 picks the *last* adapter's weights, so a base request batched with
adapter requests (every rollback, while the old adapter's answers finish) got that adapter's delta
(vLLM PR #48421, open at vLLM 0.32).

Here the tokens are cut into runs that share one adapter slot (vLLM's prefill metadata already
groups them so) and each run is one plain matmul, in float32 on float32 copies of the slot's
weights (a bfloat16 one pays for a new oneDNN kernel at each new shape: see _Float32Weights);
runs of base-model tokens get no delta. The runs of a step are computed once and reused by all layers (keyed on the
index tensor's storage and version, which vLLM bumps when it writes the next step's indices).
Signatures and output conventions are the originals', so vLLM's CPU punica wrapper calls these
unchanged; its add_lora_linear, which calls them once per slice through several layers of Python,
is replaced by one function per linear layer (`add_lora_linear` below).
"""

from __future__ import annotations

import torch

ORIGINAL: dict = {}  # vLLM's ops, kept for shapes these do not handle

# Slots whose LoRA adds nothing (the adapter merged into the weights, see serving/merged_lora.py):
# their tokens are computed like base-model tokens. Set by the worker before each step's forward.
SKIP_SLOTS: frozenset[int] = frozenset()
# The rank each slot really uses: vLLM pads every adapter to --max-lora-rank (64) with zeros, and a
# rank-16 adapter computed at 64 costs four times what it needs. Set by the worker with SKIP_SLOTS.
SLOT_RANKS: dict[int, int] = {}

Run = tuple[int, int, int]  # (first token, end token, adapter slot or -1)


class _RunCache:
    """Runs of the current step. An entry holds the index tensors it was computed from, so their
    storage (part of the key) cannot be reused by another tensor while the entry lives."""

    def __init__(self, size: int = 8):
        self.size = size
        self.entries: dict[tuple, tuple[list[Run], tuple[torch.Tensor, ...]]] = {}

    def get(self, tensors: tuple[torch.Tensor, ...], compute) -> list[Run]:
        key = tuple((t.data_ptr(), t._version, t.shape[0], t.stride(0)) for t in tensors)
        hit = self.entries.get(key)
        if hit is not None:
            return hit[0]
        if len(self.entries) >= self.size:
            self.entries.clear()
        runs = compute()
        self.entries[key] = (runs, tensors)
        return runs


_cache = _RunCache()


def runs_of_tokens(indices: torch.Tensor) -> list[Run]:
    """Maximal runs of equal slot in a per-token index tensor."""
    def compute():
        values = indices.tolist()
        runs, start = [], 0
        for i in range(1, len(values) + 1):
            if i == len(values) or values[i] != values[start]:
                runs.append((start, i, values[start]))
                start = i
        return runs
    return _cache.get((indices,), compute)


def runs_of_sequences(seq_lens: torch.Tensor, slots: torch.Tensor) -> list[Run]:
    """Runs from vLLM's prefill metadata: consecutive groups of seq_lens[b] tokens on slots[b]."""
    def compute():
        runs, start = [], 0
        for length, slot in zip(seq_lens.tolist(), slots.tolist()):
            if length:
                runs.append((start, start + length, slot))
            start += length
        return runs
    return _cache.get((seq_lens, slots), compute)


class _Float32Weights:
    """Each slot's LoRA weights in float32, transposed for `x @ w`, kept until vLLM writes the
    stacked tensor again (a slot loaded or cleared bumps its version).

    Why float32 when the model runs in bfloat16: a bfloat16 matmul goes through oneDNN, which builds
    a kernel for every new shape (~0.5 ms on this CPU, bench/lora_matmul_shapes.py) and keeps a
    bounded number of them, and a LoRA's runs change shape with every batch (each prompt length,
    each mix of versions in a step); float32 goes to MKL with no per-shape setup. At 16 streams
    the first request after a promotion waited about 35 ms less for its first token
    (bench/swap.py, BENCHMARKS.md). Float32 is also the more exact: the shrink's result is no
    longer rounded to bfloat16 before the expand. An entry holds the stacked tensors, so their
    storage (part of the key) cannot be reused by another tensor while the entry lives."""

    def __init__(self, size: int = 4096):
        self.size = size
        self.entries: dict[tuple, tuple[tuple, object, object]] = {}  # key -> (versions, pinned tensors, copy)

    def _lookup(self, key: tuple, version: tuple, build, pinned) -> torch.Tensor:
        hit = self.entries.get(key)
        if hit is not None and hit[0] == version:
            return hit[2]
        value = build()
        if len(self.entries) >= self.size:
            self.entries.clear()
        self.entries[key] = (version, pinned, value)
        return value

    def get(self, weights: torch.Tensor, slot: int, rank: int | None, expand: bool) -> torch.Tensor:
        """One slice's A ([in, rank]) or B ([rank, out]) of `slot`, for `x @ w`."""
        def build():
            w = weights[slot]
            if rank is not None:  # the rows (shrink) or columns (expand) past it are zeros
                w = w[:, :rank] if expand else w[:rank]
            return w.to(torch.float32).T.contiguous()

        key = (weights.data_ptr(), tuple(weights.shape), tuple(weights.stride()), slot, expand)
        return self._lookup(key, (weights._version, rank), build, weights)

    def layer(self, a_stacked: tuple[torch.Tensor, ...], b_stacked: tuple[torch.Tensor, ...], slot: int,
              rank: int | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """A whole layer's LoRA on `slot`: every slice's A side by side ([in, n*rank], one shrink for
        the layer) and each slice's B ([rank, out_i], one expand per slice: a block-diagonal B would
        be one matmul, but n times the multiplications, which a long prefill pays)."""
        def build():
            a = [_slot(w, slot) for w in a_stacked]
            r = rank if rank is not None else a[0].shape[0]
            a_cat = torch.cat([w[:r] for w in a]).to(torch.float32).T.contiguous()
            return a_cat, [_slot(w, slot)[:, :r].to(torch.float32).T.contiguous() for w in b_stacked]

        tensors = tuple(a_stacked) + tuple(b_stacked)
        key = (tuple(t.data_ptr() for t in tensors), slot)
        return self._lookup(key, (tuple(t._version for t in tensors), rank), build, tensors)


def _slot(weights: torch.Tensor, slot: int) -> torch.Tensor:
    return weights[slot, 0] if weights.dim() == 4 else weights[slot]


_float32 = _Float32Weights()


def lora_runs_matmul(inputs: torch.Tensor, weights: torch.Tensor, runs: list[Run], *, expand: bool = False):
    """Yield (first, end, inputs[first:end] @ weights[slot].T) in float32 for each run on an adapter,
    over the slot's used rank only (shrink: A's first rows; expand: the inputs' and B's first columns).

    weights: [slots, out, in] or [slots, 1, out, in] (how vLLM stacks adapters)."""
    if weights.dim() == 4:
        weights = weights.squeeze(1)
    for first, end, slot in runs:
        if slot < 0 or slot in SKIP_SLOTS:
            continue  # base-model tokens, or an adapter already in the weights: no delta
        rank = SLOT_RANKS.get(slot)
        x = inputs[first:end]
        if expand and rank is not None:
            x = x[:, :rank]
        yield first, end, x.to(torch.float32) @ _float32.get(weights, slot, rank, expand)


def _fits(runs: list[Run], inputs: torch.Tensor, output: torch.Tensor) -> bool:
    """The shapes vLLM sends: one row of inputs and of output per token, every token in a run.
    Anything else goes to vLLM's own op."""
    return bool(runs) and runs[-1][1] == inputs.shape[0] == output.shape[0]


def _shrink(inputs, weights, output, runs, scaling):
    rank = weights.shape[-2]
    if len(runs) != 1 or runs[0][2] < 0 or runs[0][2] in SKIP_SLOTS:
        output[:, :rank] = 0  # rows of base tokens stay zero, so the expand adds nothing to them
    for first, end, delta in lora_runs_matmul(inputs, weights, runs):
        used = delta.shape[1]
        output[first:end, :used] = scaling * delta
        if used < rank:
            output[first:end, used:rank] = 0  # the expand of this slot reads only `used` columns; kept clean


def _expand(inputs, weights, output, runs, offset, size, add_inputs):
    if not add_inputs:
        output[:, offset: offset + size] = 0
    for first, end, delta in lora_runs_matmul(inputs, weights, runs, expand=True):
        output[first:end, offset: offset + size] += delta[:, :size]


# --- vLLM's signatures ------------------------------------------------------------------------

def bgmv_shrink(inputs, lora_a_weights, output_tensor, lora_indices_tensor, scaling=1.0):
    runs = runs_of_tokens(lora_indices_tensor)
    if not _fits(runs, inputs, output_tensor):
        ORIGINAL["bgmv_shrink"](inputs, lora_a_weights, output_tensor, lora_indices_tensor, scaling)
        no_lora = lora_indices_tensor < 0  # still no delta for base tokens: zero shrink -> zero expand
        output_tensor[: no_lora.shape[0]][no_lora] = 0
        return
    _shrink(inputs, lora_a_weights, output_tensor, runs, scaling)


def bgmv_expand(inputs, lora_b_weights, output_tensor, lora_indices_tensor, add_inputs=True):
    runs = runs_of_tokens(lora_indices_tensor)
    if not _fits(runs, inputs, output_tensor):
        return ORIGINAL["bgmv_expand"](inputs, lora_b_weights, output_tensor, lora_indices_tensor, add_inputs)
    # The adapter and the model may pad their outputs differently.
    common = min(lora_b_weights.shape[-2], output_tensor.shape[1])
    _expand(inputs, lora_b_weights, output_tensor, runs, 0, common, add_inputs)


def bgmv_expand_slice(inputs, lora_b_weights, output_tensor, lora_indices_tensor, slice_offset,
                      slice_size, add_inputs=True):
    runs = runs_of_tokens(lora_indices_tensor)
    if not _fits(runs, inputs, output_tensor):
        return ORIGINAL["bgmv_expand_slice"](inputs, lora_b_weights, output_tensor, lora_indices_tensor,
                                             slice_offset, slice_size, add_inputs)
    _expand(inputs, lora_b_weights, output_tensor, runs, slice_offset, slice_size, add_inputs)


def sgmv_shrink(inputs, lora_a_weights, output_tensor, b_seq_start_loc, seq_len_tensor,
                lora_indices_tensor, batches, max_seq_length, token_nums, scaling):
    runs = runs_of_sequences(seq_len_tensor, lora_indices_tensor)
    if not _fits(runs, inputs, output_tensor):
        return ORIGINAL["sgmv_shrink"](inputs, lora_a_weights, output_tensor, b_seq_start_loc, seq_len_tensor,
                                       lora_indices_tensor, batches, max_seq_length, token_nums, scaling)
    _shrink(inputs, lora_a_weights, output_tensor, runs, scaling)


def sgmv_expand(inputs, lora_b_weights, output_tensor, b_seq_start_loc, seq_len_tensor,
                lora_indices_tensor, batches, max_seq_length, token_nums, add_inputs=False):
    runs = runs_of_sequences(seq_len_tensor, lora_indices_tensor)
    if not _fits(runs, inputs, output_tensor):
        return ORIGINAL["sgmv_expand"](inputs, lora_b_weights, output_tensor, b_seq_start_loc, seq_len_tensor,
                                       lora_indices_tensor, batches, max_seq_length, token_nums, add_inputs)
    common = min(lora_b_weights.shape[-2], output_tensor.shape[1])
    _expand(inputs, lora_b_weights, output_tensor, runs, 0, common, add_inputs)


def sgmv_expand_slice(inputs, lora_b_weights, output_tensor, b_seq_start_loc, seq_len_tensor,
                      lora_indices_tensor, batches, max_seq_length, token_nums, slice_offset, slice_size,
                      add_inputs=False):
    runs = runs_of_sequences(seq_len_tensor, lora_indices_tensor)
    if not _fits(runs, inputs, output_tensor):
        return ORIGINAL["sgmv_expand_slice"](inputs, lora_b_weights, output_tensor, b_seq_start_loc,
                                             seq_len_tensor, lora_indices_tensor, batches, max_seq_length,
                                             token_nums, slice_offset, slice_size, add_inputs)
    _expand(inputs, lora_b_weights, output_tensor, runs, slice_offset, slice_size, add_inputs)


def add_lora_linear(self, y, x, lora_a_stacked, lora_b_stacked, scale, output_slices, *, buffer=None, **kwargs):
    """PunicaWrapperCPU.add_lora_linear for one whole linear layer, in float32: per run of tokens on
    an adapter, one shrink through every slice's A at once, then one expand per output slice.

    vLLM's version is a shrink and an expand per slice, each through several Python layers and a
    float32 buffer zeroed for the whole batch (about 30 small ops per layer, 120 layers a step);
    here it is 1 + 2 per slice. Measured together with the float32 weights (bench/swap.py and
    bench/transition_step.py, BENCHMARKS.md), not apart."""
    if self.no_lora:
        return  # no token of this step has a delta (vLLM's flag, or ours: all on the merged version)
    x2, y2 = x.view(-1, x.shape[-1]), y.view(-1, y.shape[-1])
    runs = runs_of_tokens(self.token_lora_indices)
    if buffer is not None or not _fits(runs, x2, y2) or y2.shape[1] != sum(output_slices):
        return ORIGINAL["add_lora_linear"](self, y, x, lora_a_stacked, lora_b_stacked, scale, output_slices,
                                           buffer=buffer, **kwargs)
    for first, end, slot in runs:
        if slot < 0 or slot in SKIP_SLOTS:
            continue  # base-model tokens, or an adapter already in the weights: no delta
        a, bs = _float32.layer(lora_a_stacked, lora_b_stacked, slot, SLOT_RANKS.get(slot))
        shrunk = x2[first:end].to(torch.float32) @ a
        if scale != 1.0:
            shrunk *= scale
        rank, offset = a.shape[1] // len(bs), 0
        for i, (b, size) in enumerate(zip(bs, output_slices)):
            rows = min(size, b.shape[1])  # the adapter and the model may pad their outputs differently
            y2[first:end, offset: offset + rows] += shrunk[:, i * rank:(i + 1) * rank] @ b[:, :rows]
            offset += size


OPS = {f.__name__: f for f in (bgmv_shrink, bgmv_expand, bgmv_expand_slice,
                               sgmv_shrink, sgmv_expand, sgmv_expand_slice)}


def lora_rank(lora_model) -> int:
    """The largest rank any module of a vLLM LoRAModel uses (computed once per model object)."""
    rank = getattr(lora_model, "served_rank", None)
    if rank is None:
        ranks = [a.shape[0] for w in lora_model.loras.values()
                 for a in (w.lora_a if isinstance(w.lora_a, list) else [w.lora_a]) if a is not None]
        rank = lora_model.served_rank = max(ranks, default=0)
    return rank


def slot_ranks(manager) -> dict[int, int]:
    """Slot index -> the rank its adapter uses, for vLLM's LoRAModelManager `manager`."""
    ranks = {}
    for index, lora_id in enumerate(manager.lora_index_to_id):
        lora_model = manager._registered_adapters.cache.get(lora_id) if lora_id is not None else None
        if lora_model is not None:
            ranks[index] = lora_rank(lora_model)
    return ranks


def install() -> None:
    """Put these ops in place of vLLM's, in its torch_ops module and in the CPU punica wrapper
    (which imported them by name). Idempotent."""
    from vllm.lora.ops.torch_ops import lora_ops
    from vllm.lora.punica_wrapper import punica_cpu

    for name, op in OPS.items():
        current = getattr(lora_ops, name)
        if current is op:
            continue
        ORIGINAL[name] = current
        setattr(lora_ops, name, op)
        setattr(punica_cpu, name, op)
    if punica_cpu.PunicaWrapperCPU.add_lora_linear is not add_lora_linear:
        ORIGINAL["add_lora_linear"] = punica_cpu.PunicaWrapperCPU.add_lora_linear
        punica_cpu.PunicaWrapperCPU.add_lora_linear = add_lora_linear


def installed() -> bool:
    """Whether vLLM's CPU LoRA path runs these ops (checked in each worker at start-up)."""
    from vllm.lora.ops.torch_ops import lora_ops
    from vllm.lora.punica_wrapper import punica_cpu

    return (all(getattr(lora_ops, name) is op for name, op in OPS.items())
            and punica_cpu.PunicaWrapperCPU.add_lora_linear is add_lora_linear)
