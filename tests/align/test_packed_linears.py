"""Frozen CPU linears run on oneDNN-packed weights inside `packed_frozen_linears`: the same outputs and the
same LoRA gradients as plain nn.Linear, only frozen layers packed, a weight changed in place is repacked,
and everything is as before once the block ends."""

import pytest
import torch
from torch import nn

from align.packed import packed_frozen_linears
from align.ppo import PPOConfig, build_policy



@pytest.fixture(autouse=True, scope="module")
def onednn():
    """The CPU torch this project installs has oneDNN; one without it is a broken install, not a skip."""
    assert torch.backends.mkldnn.is_available(), "this torch has no oneDNN: reinstall the CPU torch (make install)."

IDS = torch.tensor([[5, 9, 12, 3, 40, 7], [0, 0, 8, 3, 21, 33]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]])


def lora_policy(tiny_llama):
    policy = build_policy(tiny_llama(), PPOConfig(lora_r=4))
    with torch.no_grad():  # a LoRA that changes the outputs, so gradients reach A as well as B
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.3)
    return policy


def logits_and_lora_grads(policy):
    policy.zero_grad()
    logits = policy(input_ids=IDS, attention_mask=MASK).logits
    logits.square().mean().backward()
    grads = {n: p.grad.clone() for n, p in policy.named_parameters() if p.requires_grad}
    return logits.detach(), grads


def test_same_outputs_and_lora_gradients(tiny_llama, one_torch_thread):
    policy = lora_policy(tiny_llama)
    plain_logits, plain_grads = logits_and_lora_grads(policy)
    with packed_frozen_linears(policy) as packed:
        logits, grads = logits_and_lora_grads(policy)
    assert packed > 0
    torch.testing.assert_close(logits, plain_logits, atol=1e-5, rtol=1e-4)
    assert grads.keys() == plain_grads.keys() and len(grads) > 0
    for name in grads:
        torch.testing.assert_close(grads[name], plain_grads[name], atol=1e-5, rtol=1e-4)


def test_only_plain_frozen_linears_are_packed_and_all_are_restored(tiny_llama):
    policy = lora_policy(tiny_llama)
    frozen = [m for m in policy.modules() if type(m) is nn.Linear and not m.weight.requires_grad]
    trainable = [m for m in policy.modules() if type(m) is nn.Linear and m.weight.requires_grad]  # LoRA A and B
    assert frozen and trainable
    with packed_frozen_linears(policy) as packed:
        assert packed == len(frozen)
        assert all("forward" in m.__dict__ for m in frozen)
        assert not any("forward" in m.__dict__ for m in trainable)
    assert not any("forward" in m.__dict__ or "_packed_weight" in m.__dict__ for m in policy.modules())
    with packed_frozen_linears(policy, enabled=False) as packed:
        assert packed == 0


def test_a_weight_changed_in_place_is_packed_again(one_torch_thread):
    layer = nn.Linear(8, 4).requires_grad_(False)
    x = torch.randn(3, 8)
    with packed_frozen_linears(layer):
        before = layer(x)
        with torch.no_grad():
            layer.weight.mul_(2.0)
        after = layer(x)
    torch.testing.assert_close(after, x @ layer.weight.T + layer.bias)
    assert not torch.allclose(after, before)


def test_nested_blocks_leave_the_outer_packing_to_the_outer_block(tiny_llama):
    policy = lora_policy(tiny_llama)
    with packed_frozen_linears(policy) as outer:
        with packed_frozen_linears(policy) as inner:
            assert inner == 0
        assert sum("forward" in m.__dict__ for m in policy.modules()) == outer
    assert not any("forward" in m.__dict__ for m in policy.modules())
