"""The merged active adapter (serving/merged_lora.py) on a stand-in for vLLM's LoRA manager: after
any sequence of merges, merged weights + each LoRA (rewritten relative to the merge) compute exactly
what that version computes alone; the merged version's own LoRA is zero and its slot skipped; a
swap recomputes from the base weights, so going back to the base model restores them bit for bit."""

from types import SimpleNamespace

import pytest
import torch

from serving import merged_lora
from serving.merged_lora import MergeState

HIDDEN, RANK = 8, 2
Q, K, V = "layers.0.q_proj", "layers.0.k_proj", "layers.0.v_proj"
QKV, O = "layers.0.qkv_proj", "layers.0.o_proj"


class Layer:
    """A LoRA-wrapped linear layer: its base layer's weight and how its output is sliced."""

    def __init__(self, out_slices, generator):
        self.base_layer = SimpleNamespace(weight=torch.randn(sum(out_slices), HIDDEN, generator=generator))
        self.output_slices = tuple(out_slices)
        self.input_size = HIDDEN


class Manager:
    """The parts of vLLM's LoRAModelManager the merge uses; a registered LoRA keeps what it was given."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.modules = {QKV: Layer([HIDDEN, 4, 4], g), O: Layer([HIDDEN], g)}
        self.packed_modules = {QKV: [Q, K, V]}
        self.lora_config = SimpleNamespace(max_lora_rank=4 * RANK, lora_dtype=torch.float32)
        self.registered, self._active_adapters, self.lora_index_to_id = {}, {}, [None, None, None]

    def list_adapters(self):
        return dict(self.registered)

    def remove_adapter(self, lid):
        self.registered.pop(lid, None)
        self._active_adapters.pop(lid, None)
        self.lora_index_to_id = [None if x == lid else x for x in self.lora_index_to_id]

    def add_adapter(self, lora):
        self.registered[lora.id] = lora

    def activate_adapter(self, lid):
        self._active_adapters[lid] = None
        self.lora_index_to_id[self.lora_index_to_id.index(None)] = lid

    def load(self, lid, modules):
        """What vLLM's loader returns for an adapter on disk, through the worker's hook."""
        lora = merged_lora.load_relative(self, SimpleNamespace(lora_path=f"/adapters/{lid}", lora_int_id=lid),
                                         lambda request: lora_model(lid, modules))
        self.add_adapter(lora)
        self.activate_adapter(lid)


def lora_model(lid, modules):
    from vllm.lora.lora_model import LoRAModel
    from vllm.lora.lora_weights import LoRALayerWeights

    g = torch.Generator().manual_seed(lid)
    out = {Q: HIDDEN, K: 4, V: 4, O: HIDDEN}
    loras = {m: LoRALayerWeights(m, RANK, 2 * RANK, torch.randn(RANK, HIDDEN, generator=g),
                                 torch.randn(out[m], RANK, generator=g)) for m in modules}  # scaling 2
    return LoRAModel(lid, RANK, loras)


def weight(manager, module):
    return manager.modules[module].base_layer.weight


def served(manager, lid, module):
    """The effective weight a request on LoRA `lid` computes with: merged weights + its LoRA."""
    w = weight(manager, module).clone().float()
    lora = manager.registered[lid]
    subs = manager.packed_modules.get(module, [module])
    sizes = manager.modules[module].output_slices if len(subs) > 1 else [w.shape[0]]
    start = 0
    for sub, size in zip(subs, sizes):
        if sub in lora.loras:
            w[start:start + size] += lora.loras[sub].lora_b * lora.loras[sub].scaling @ lora.loras[sub].lora_a
        start += size
    return w


def alone(base, lid, module, manager):
    """What version `lid` computes served alone: W0 + its own delta."""
    w = base[module].clone()
    own = merged_lora.STATE.originals[lid]
    subs = manager.packed_modules.get(module, [module])
    sizes = manager.modules[module].output_slices if len(subs) > 1 else [w.shape[0]]
    start = 0
    for sub, size in zip(subs, sizes):
        if sub in own:
            w[start:start + size] += own[sub][1] @ own[sub][0]
        start += size
    return w


@pytest.fixture
def manager(monkeypatch):
    monkeypatch.setattr(merged_lora, "STATE", MergeState())
    m = Manager()
    m.load(1, [])  # the base model's null adapter (loaded from NULL_ADAPTER_PATH in the app)
    m.load(2, [Q, V, O])
    m.load(3, [Q, K, V])
    return m


def test_every_version_computes_what_it_computes_alone_whatever_is_merged(manager):
    base = {name: weight(manager, name).clone() for name in manager.modules}

    for merged in (2, 3, None, 3, 2):
        assert merged_lora.merge(manager, merged) == ""
        for lid in (1, 2, 3):
            for module in manager.modules:
                expected = base[module] if lid == 1 else alone(base, lid, module, manager)
                torch.testing.assert_close(served(manager, lid, module), expected, rtol=1e-5, atol=1e-5)


def test_the_merged_version_adds_nothing_and_its_slot_is_skipped(manager):
    merged_lora.merge(manager, 2)

    lora = manager.registered[2]
    assert all(not w.lora_b.any() for w in lora.loras.values())
    assert merged_lora.skip_slots(manager) == {manager.lora_index_to_id.index(2)}


def test_with_nothing_merged_the_null_adapter_is_skipped(manager):
    assert merged_lora.skip_slots(manager) == {manager.lora_index_to_id.index(1)}


def test_back_to_the_base_model_restores_the_weights_bit_for_bit(manager):
    base = {name: weight(manager, name).clone() for name in manager.modules}

    for merged in (2, 3, 2, 3, None):
        merged_lora.merge(manager, merged)

    for name in manager.modules:
        assert torch.equal(weight(manager, name), base[name])


def test_a_merge_that_needs_too_high_a_rank_is_refused_and_changes_nothing(manager):
    manager.lora_config.max_lora_rank = RANK  # relative LoRAs need 2 * RANK
    before = {name: weight(manager, name).clone() for name in manager.modules}

    reason = merged_lora.merge(manager, 2)

    assert "max-lora-rank" in reason and merged_lora.STATE.merged is None
    assert all(torch.equal(weight(manager, n), before[n]) for n in manager.modules)


def test_an_unknown_lora_is_not_merged(manager):
    assert merged_lora.merge(manager, 99) == "not-loaded"


def test_a_lora_on_more_than_linear_layers_is_refused_at_load(manager):
    with pytest.raises(merged_lora.MergeRefused, match="no-merge-active-adapter"):
        merged_lora.load_relative(manager, SimpleNamespace(lora_path="/adapters/9", lora_int_id=9),
                                  lambda request: with_embedding(9))


def with_embedding(lid):
    lora = lora_model(lid, [Q])
    lora.loras["embed_tokens"] = lora.loras[Q]
    return lora
