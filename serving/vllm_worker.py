"""What the app adds to vLLM's worker processes, named by `--worker-extension-cls
serving.vllm_worker.CpuLoRAOps` (the in-process engine sets it; `vllm serve` replicas take the
same flag, with this repository on their PYTHONPATH).

vLLM imports this module by that name in each worker before the model loads; that import is the
one hook a plain `vllm serve` offers, so it installs here:
- the CPU LoRA ops (`serving.cpu_lora_ops`: faster, and no adapter delta for base-model tokens);
  GPU workers never call those ops;
- where the app's engine merges its active adapter (`serving.merged_lora`; the engine sets
  CHAT_MERGE_ACTIVE_ADAPTER=1): every LoRA the worker loads is stored relative to the merged one,
  and each step tells the CPU ops which slots add nothing.
The app process itself never imports this module."""

import os

from vllm.lora import model_manager, worker_manager

from serving import cpu_lora_ops, merged_lora

cpu_lora_ops.install()

_vllm_load_adapter = worker_manager.WorkerLoRAManager._load_adapter
_vllm_set_adapter_mapping = model_manager.LoRAModelManager.set_adapter_mapping


def _load_adapter(self, lora_request):
    return merged_lora.load_relative(self._adapter_manager, lora_request,
                                     lambda request: _vllm_load_adapter(self, request))


def _set_adapter_mapping(self, mapping):
    # After this step's activations, before its forward: which slots add nothing, and what rank each uses.
    cpu_lora_ops.SKIP_SLOTS = merged_lora.skip_slots(self)
    cpu_lora_ops.SLOT_RANKS = cpu_lora_ops.slot_ranks(self)
    result = _vllm_set_adapter_mapping(self, mapping)
    if not self.supports_mm:
        # vLLM skips the LoRA ops of a step whose tokens are all base-model tokens; a step whose
        # tokens are all on the merged version (or the base model's null adapter when nothing is
        # merged) needs them no more. Set every step: vLLM recomputes its own flag only when the
        # mapping changes, and what is merged can change under an unchanged mapping.
        zero = merged_lora.STATE.zero_ids()
        wrapper = self.punica_wrapper_mapping[model_manager.DEFAULT_LANGUAGE_WRAPPER_KEY]
        wrapper.no_lora = all(lora_id == 0 or lora_id in zero for lora_id in set(mapping.index_mapping))
    return result


model_manager.LoRAModelManager.set_adapter_mapping = _set_adapter_mapping
# Only the app's in-process engine merges (it sets the variable); a plain `vllm serve` replica keeps
# vLLM's own adapter loading.
if os.environ.get(merged_lora.MERGE_ENV) == "1":
    merged_lora.keep_base_weights()
    worker_manager.WorkerLoRAManager._load_adapter = _load_adapter


class CpuLoRAOps:
    """The worker extension class. Its methods run in each worker over vLLM's collective_rpc."""

    def cpu_lora_ops_installed(self) -> bool:
        return cpu_lora_ops.installed()

    def merge_adapter(self, lora_id: int | None) -> str:
        """Merge LoRA `lora_id` (None: none) into the weights, between two steps; "" or why not."""
        return merged_lora.merge(self.model_runner.lora_manager._adapter_manager, lora_id)

    def merged_adapter_state(self) -> dict:
        """What is merged and which slots the CPU ops skip (for tests and benchmarks)."""
        manager = self.model_runner.lora_manager._adapter_manager
        return {"merged": merged_lora.STATE.merged, "zero": sorted(merged_lora.STATE.zero_ids()),
                "slots": list(manager.lora_index_to_id), "skip_slots": sorted(cpu_lora_ops.SKIP_SLOTS)}
