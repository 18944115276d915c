"""Frozen linear layers on the CPU through oneDNN, with each weight packed once.

LoRA training never changes the base model's weights, yet every call of a plain `nn.Linear` on the CPU
hands MKL the [out, in] matrix as it is, to be re-laid out for that call. When few rows go through it (a
decode step has one per answer) that is a large share of the work. oneDNN's linear takes the weight
already in its own blocked layout, so packing each frozen weight once pays back on every later call:
measured on 2 CPU cores with SmolLM2-135M and a LoRA on q/k/v/o, sampling 8 answers was 1.24x faster,
the reference forward pass 1.3x and a training minibatch (forward + backward) 1.09x (BENCHMARKS.md).

`packed_frozen_linears(model)` switches every frozen float32 `nn.Linear` of a CPU model to that path
for the duration of a `with` block, then restores it. Gradients still flow to the layer's input (the
LoRA weights before it need them); the frozen weight itself gets none. It costs one more copy of those
weights in memory. A weight that changes in place inside the block (PEFT's merge_adapter, say) is packed
again on its next call, so a stale copy is never used.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

import torch
from torch import nn


class _PackedLinear(torch.autograd.Function):
    """y = x W^T + b through oneDNN with W packed; backward gives the input's gradient only (W is frozen)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, packed: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        ctx.save_for_backward(weight)
        return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (weight,) = ctx.saved_tensors
        return grad_output @ weight, None, None, None


def _packed_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if self.weight._version != self._packed_version:  # changed in place since it was packed
        _pack(self)
    return _PackedLinear.apply(x.contiguous(), self._packed_weight, self.weight, self.bias)


def _pack(linear: nn.Linear) -> None:
    with torch.inference_mode(False):  # a copy packed while scoring must still serve a training pass later
        linear._packed_weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach())
    linear._packed_version = linear.weight._version


def can_pack(linear: nn.Module) -> bool:
    """A plain nn.Linear (not a LoRA wrapper or other subclass) with a frozen float32 weight on the CPU."""
    return (
        type(linear) is nn.Linear
        and not linear.weight.requires_grad
        and linear.weight.device.type == "cpu"
        and linear.weight.dtype == torch.float32
        and (linear.bias is None or not linear.bias.requires_grad)
    )


@contextlib.contextmanager
def packed_frozen_linears(model: nn.Module, *, enabled: bool = True) -> Iterator[int]:
    """Inside the block, the frozen CPU linears of `model` run on packed weights; yields how many.
    A no-op (yields 0) when disabled, on a GPU, or where this torch has no oneDNN."""
    available = enabled and torch.backends.mkldnn.is_available()
    # Layers an enclosing block already packed stay its business (it restores them).
    layers = [m for m in model.modules() if can_pack(m) and "_packed_weight" not in m.__dict__] if available else []
    for linear in layers:
        _pack(linear)
        linear.forward = types.MethodType(_packed_forward, linear)  # an instance attribute shadows the class's
    try:
        yield len(layers)
    finally:
        for linear in layers:
            del linear.forward, linear._packed_weight, linear._packed_version


def _merged_forward(weight: torch.Tensor, packed: torch.Tensor | None, bias: torch.Tensor | None):
    def forward(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), packed, bias, "none", [], "")
        return nn.functional.linear(x, weight, bias)

    return forward


def _mergeable(layer: nn.Module) -> bool:
    """A PEFT LoRA linear with its adapters on, not merged in place, plain LoRA (no DoRA or other variant)
    over an nn.Linear; anything else keeps its own forward."""
    return (
        hasattr(layer, "lora_A") and hasattr(layer, "get_delta_weight")
        and isinstance(getattr(layer, "base_layer", None), nn.Linear)
        and not layer.disable_adapters and not layer.merged and not getattr(layer, "lora_variant", {})
        and not getattr(layer, "fan_in_fan_out", False)
    )


@contextlib.contextmanager
def merged_lora_linears(model: nn.Module) -> Iterator[int]:
    """Inside the block (meant for sampling, under no_grad), every active LoRA linear of `model` computes
    x (W + scale B A)^T + b with that sum formed once, instead of the base matmul plus two small LoRA
    matmuls and their Python on every call: a decode step calls each of them once per token. On the CPU
    the merged weight is packed for oneDNN as well. W itself is never written (PEFT's merge_adapter
    would add and later subtract B A in place, and the rounding would drift the reference model), so
    leaving the block restores the exact layers. Yields how many layers were merged."""
    use_packed = torch.backends.mkldnn.is_available()
    layers = [m for m in model.modules() if _mergeable(m)]
    for layer in layers:
        base = layer.base_layer
        with torch.no_grad():
            delta = sum(layer.get_delta_weight(a) for a in layer.active_adapters if a in layer.lora_A)
            weight = (base.weight + delta).detach()
            packed = None
            if use_packed and weight.device.type == "cpu" and weight.dtype == torch.float32:
                packed = torch.ops.mkldnn._reorder_linear_weight(weight)
        bias = None if base.bias is None else base.bias.detach()
        layer.forward = _merged_forward(weight, packed, bias)  # an instance attribute shadows the class's
    try:
        yield len(layers)
    finally:
        for layer in layers:
            del layer.forward
