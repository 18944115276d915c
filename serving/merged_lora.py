"""The active adapter merged into the model's weights, in vLLM's worker (imported there by
serving/vllm_worker.py; the app process never imports it).

One adapter serves every user at a time, so paying for it per token (about half the speed on a
2-core CPU) buys nothing. The active version is added into the base weights
(W = W0 + B·A, from an exact copy of W0, so swaps recompute instead of accumulating rounding) and
every LoRA the engine holds is rewritten relative to what is merged:

    served version v, merged m:  delta_v - delta_m  =  [B_v, -B_m] · [A_v; A_m]   (rank r_v + r_m)

so a request keeps meaning "version v" whatever is merged: the app still sends each request with
the LoRA of the version it was promised, and the merge only decides which version is free. The
merged version's own LoRA becomes zero, and its slot is skipped by the CPU ops
(`cpu_lora_ops.SKIP_SLOTS`), so it runs at base-model speed. The base model is a LoRA too (the
"null adapter", all zeros, never read from disk), so base requests stay exact while an adapter is
merged; while nothing is merged they name no LoRA, as on plain vLLM, and the app lets the last of
those finish before it merges anything (serving.engine.Engine.merge). A merge runs as one
collective_rpc, between two forward steps of the engine: requests in flight see either the old
weights with the old relative LoRAs or the new ones with the new, never a mix.

What cannot be merged exactly (quantized weights, tensor parallelism, LoRA on embeddings or extra
modules) is refused with a reason; the app then keeps serving that version through its LoRA.
"""

from __future__ import annotations

import torch

# The null adapter's lora_path: the app loads the base model's LoRA under this path and the worker
# builds it in memory instead of reading a directory.
NULL_ADAPTER_PATH = "null-adapter://base-model"

Weights = dict[str, tuple[torch.Tensor, torch.Tensor]]  # module -> (A [r, in], B·scaling [out, r])


class MergeRefused(Exception):
    """This adapter cannot be merged exactly; the sentence says why."""


class MergeState:
    """What one worker has merged, and each LoRA's own weights (relative to the base model)."""

    def __init__(self) -> None:
        self.base: dict[str, torch.Tensor] = {}  # module -> exact copy of its base weight (CPU)
        self.originals: dict[int, Weights] = {}  # lora id -> its weights relative to the base model
        self.merged: int | None = None  # lora id merged into the weights (None: the base model)
        self.changed: set[str] = set()  # layers whose weight has been set by a merge (W0 or not)

    def zero_ids(self) -> set[int]:
        """LoRAs whose delta to the current weights is zero: their tokens need no LoRA compute."""
        zero = {lid for lid, w in self.originals.items() if not w} if self.merged is None else set()
        if self.merged is not None:
            zero.add(self.merged)
        return zero


STATE = MergeState()


# --- loading: every LoRA the worker loads is stored relative to what is merged -------------------

def record(lora) -> None:
    """Keep a LoRA's own weights (unpacked, scaling folded into B) before vLLM packs them."""
    weights: Weights = {}
    for name, w in lora.loras.items():
        if w.lora_a is None or w.lora_b is None:
            continue
        weights[name] = (w.lora_a.detach().clone(), (w.lora_b * w.scaling).detach().clone())
    STATE.originals[lora.id] = weights


def null_lora(manager, lora_id: int):
    """The base model as a LoRA: no weights of its own (relative to a merge it is -delta_merged)."""
    from vllm.lora.lora_model import LoRAModel

    return LoRAModel(lora_id, 1, {})


def relative_lora(lora_id: int, max_rank: int):
    """A LoRAModel (unpacked) whose delta is this LoRA's minus the merged one's."""
    from vllm.lora.lora_model import LoRAModel
    from vllm.lora.lora_weights import LoRALayerWeights

    own = STATE.originals[lora_id]
    merged = STATE.originals[STATE.merged] if STATE.merged is not None and STATE.merged != lora_id else {}
    loras = {}
    for name in own.keys() | merged.keys():
        parts = ([own[name]] if name in own else []) + \
                ([(merged[name][0], -merged[name][1])] if name in merged else [])
        a = torch.cat([p[0] for p in parts], dim=0)
        b = torch.cat([p[1] for p in parts], dim=1)
        if STATE.merged == lora_id:  # merged: nothing left to add (the slot is skipped, zeros are a safeguard)
            a, b = torch.zeros_like(a), torch.zeros_like(b)
        if a.shape[0] > max_rank:
            raise MergeRefused(f"served beside the merged adapter it needs rank {a.shape[0]}, above the engine's "
                               f"--max-lora-rank {max_rank}: raise --max-lora-rank to at least twice the adapters' "
                               f"rank, or serve without merging (--no-merge-active-adapter)")
        loras[name] = LoRALayerWeights(name, a.shape[0], a.shape[0], a, b, scaling=1.0)
    if not loras:  # vLLM needs one module; a zero rank-1 LoRA on any of the null adapter's is enough
        return None
    return LoRAModel(lora_id, max(w.rank for w in loras.values()), loras)


def load_relative(manager, lora_request, load_from_disk):
    """What the worker's LoRA manager loads for `lora_request`: vLLM's own load (or the null
    adapter), recorded, then rewritten relative to what is merged."""
    if lora_request.lora_path == NULL_ADAPTER_PATH:
        lora = null_lora(manager, lora_request.lora_int_id)
    else:
        lora = load_from_disk(lora_request)
        check_servable(manager, lora)
    record(lora)
    return relative_or_placeholder(manager, lora.id)


def check_servable(manager, lora) -> None:
    """Only LoRAs on linear layers can be kept relative to a merge; anything else (embeddings, a
    replaced head) is refused with a sentence rather than served without it."""
    covered = {sub for _, subs in linear_layers(manager).values() for sub in subs}
    extra = sorted(set(lora.loras) - covered) + sorted(getattr(lora, "modules_to_save", None) or {})
    if extra:
        raise MergeRefused(f"it adapts {', '.join(extra[:3])}, which an engine that merges its active adapter "
                           f"cannot serve exactly; start the app with --no-merge-active-adapter to serve it")


def relative_or_placeholder(manager, lora_id: int):
    lora = relative_lora(lora_id, manager.lora_config.max_lora_rank)
    return lora if lora is not None else zero_placeholder(manager, lora_id)


def zero_placeholder(manager, lora_id: int):
    """A LoRA with no delta: vLLM's packing wants at least one module, so one zero rank-1 module."""
    from vllm.lora.lora_model import LoRAModel
    from vllm.lora.lora_weights import LoRALayerWeights

    module, subs = next(iter(linear_layers(manager).values()))
    out = module.output_slices[0] if len(subs) > 1 else sum(module.output_slices)
    dtype = manager.lora_config.lora_dtype
    a = torch.zeros(1, module.input_size, dtype=dtype)
    b = torch.zeros(out, 1, dtype=dtype)
    return LoRAModel(lora_id, 1, {subs[0]: LoRALayerWeights(subs[0], 1, 1, a, b, scaling=1.0)})


# --- merging --------------------------------------------------------------------------------------

def linear_layers(manager) -> dict[str, tuple[object, list[str]]]:
    """LoRA-wrapped linear layers: module name -> (layer, the adapter module names it packs)."""
    layers = {}
    for name, module in manager.modules.items():
        if hasattr(module, "base_layer") and hasattr(module, "output_slices"):
            layers[name] = (module, manager.packed_modules.get(name, [name]))
    return layers


def check_mergeable(manager, weights: Weights) -> None:
    layers = linear_layers(manager)
    covered = {sub for _, subs in layers.values() for sub in subs}
    extra = sorted(set(weights) - covered)
    if extra:
        raise MergeRefused(f"it adapts modules that are not plain linear layers: {', '.join(extra[:3])}")
    for name, (module, subs) in layers.items():
        if not any(s in weights for s in subs):
            continue
        layer = module.base_layer
        weight = getattr(layer, "merge_base_weight", getattr(layer, "weight", None))
        if weight is None or weight.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise MergeRefused(f"{name} has quantized weights")
        if layer.weight.numel() == 0 and getattr(layer, "merge_base_weight", None) is None:
            raise MergeRefused(f"{name}'s weight was packed for the CPU kernel without a copy to merge into")
        if getattr(module, "tp_size", 1) != 1:
            raise MergeRefused("the model is split over several devices (tensor parallelism)")
        if len(subs) > 1 and len(module.output_slices) != len(subs):
            raise MergeRefused(f"{name} packs its modules in a way this merge does not know")


def merged_weight(base: torch.Tensor, module, subs: list[str], weights: Weights) -> torch.Tensor:
    """W0 + B·A, computed in float32 from the exact copy of W0, in the layer's dtype."""
    new = base.to(torch.float32, copy=True)  # never in place: base is the exact copy of W0
    if len(subs) > 1:
        sizes = list(module.output_slices)
    else:
        sizes = [new.shape[0]]
    start = 0
    for sub, size in zip(subs, sizes):
        if sub in weights:
            a, b = weights[sub]
            new[start: start + size] += b.float() @ a.float()
        start += size
    return new


# --- CPU: vLLM packs each linear layer's weight for its GEMM kernel and drops the plain tensor ------

MERGE_ENV = "CHAT_MERGE_ACTIVE_ADAPTER"  # set by the app's engine when it merges (serving/engine.py)
_repack = None  # vLLM's dispatch_cpu_unquantized_gemm, which packs a layer's weight for its kernel


def keep_base_weights() -> None:
    """Before vLLM packs a linear layer's weight (and drops the tensor), keep an exact copy on the
    layer: a merge needs W0 and repacks W0 + B·A with vLLM's own packing."""
    global _repack
    from vllm.model_executor.layers import utils
    from vllm.model_executor.layers.linear import LinearBase

    if _repack is not None:
        return
    _repack = utils.dispatch_cpu_unquantized_gemm

    def dispatch(layer, remove_weight):
        if remove_weight and isinstance(layer, LinearBase) and layer.weight.ndim == 2 and not layer.weight.is_meta:
            layer.merge_base_weight = layer.weight.detach().clone()
        return _repack(layer, remove_weight)

    utils.dispatch_cpu_unquantized_gemm = dispatch


def base_weight(name: str, layer) -> torch.Tensor:
    """W0 of a layer: the copy kept before packing (CPU), else a copy of its weight taken the first
    time it is merged (GPU keeps the tensor and the kernels read it in place)."""
    kept = getattr(layer, "merge_base_weight", None)
    if kept is not None:
        return kept
    return STATE.base.setdefault(name, layer.weight.detach().to("cpu", copy=True))


def set_weight(layer, weight: torch.Tensor) -> None:
    if getattr(layer, "merge_base_weight", None) is not None:  # packed on CPU: pack the new weight
        layer.weight = torch.nn.Parameter(weight, requires_grad=False)
        _repack(layer, remove_weight=True)
    else:
        with torch.no_grad():
            layer.weight.copy_(weight)


def merge_weights(manager, lora_id: int | None) -> None:
    """Set every adapted layer's weight to W0 + delta of `lora_id` (W0 where it adapts nothing)."""
    weights = STATE.originals[lora_id] if lora_id is not None else {}
    for name, (module, subs) in linear_layers(manager).items():
        if name not in STATE.changed and not any(s in weights for s in subs):
            continue  # W0 now, and this adapter does not change it either
        layer = module.base_layer
        base = base_weight(name, layer)
        set_weight(layer, merged_weight(base, module, subs, weights).to(base.dtype).to(base.device
                   if layer.weight.numel() == 0 else layer.weight.device))
        STATE.changed.add(name)


def relativize_registered(manager) -> None:
    """Rewrite every LoRA the manager holds relative to the new merge, keeping which are active."""
    registered = list(manager.list_adapters())
    active = [lid for lid in registered if lid in manager._active_adapters]
    for lid in registered:
        if lid not in STATE.originals:
            continue  # not loaded through us (vLLM's warm-up dummies are removed before serving)
        manager.remove_adapter(lid)
        manager.add_adapter(relative_or_placeholder(manager, lid))
    for lid in active:
        if lid in STATE.originals:
            manager.activate_adapter(lid)


def merge(manager, lora_id: int | None) -> str:
    """Merge `lora_id` (None: the base model) into the weights and rewrite every LoRA relative to
    it. Returns "" on success, else why not (nothing changed then)."""
    if lora_id is not None and lora_id not in STATE.originals:
        return "not-loaded"
    if lora_id == STATE.merged:
        return ""
    weights = STATE.originals[lora_id] if lora_id is not None else {}
    try:
        check_mergeable(manager, weights)
        max_rank = manager.lora_config.max_lora_rank
        for lid, own in STATE.originals.items():
            rank = max((a.shape[0] for a, _ in own.values()), default=0) + \
                max((a.shape[0] for a, _ in weights.values()), default=0)
            if lid != lora_id and rank > max_rank:
                raise MergeRefused(f"a loaded adapter would need rank {rank} relative to it, above "
                                   f"--max-lora-rank {max_rank}")
    except MergeRefused as e:
        return str(e)
    merge_weights(manager, lora_id)
    STATE.merged = lora_id
    forget_unloaded(manager)
    relativize_registered(manager)
    return ""


def forget_unloaded(manager) -> None:
    """Drop the weights of LoRAs vLLM has evicted (a reload records them again), but never the
    merged one's: every relative LoRA is computed from it."""
    keep = set(manager.list_adapters()) | ({STATE.merged} if STATE.merged is not None else set())
    for lid in list(STATE.originals):
        if lid not in keep:
            STATE.originals.pop(lid)


def skip_slots(manager) -> frozenset[int]:
    """Slots (indices vLLM's ops see) holding a LoRA whose delta is zero."""
    zero = STATE.zero_ids()
    return frozenset(i for i, lid in enumerate(manager.lora_index_to_id) if lid is not None and lid in zero)
