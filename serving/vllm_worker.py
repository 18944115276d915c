"""What the app adds to vLLM's worker processes, named by `--worker-extension-cls
serving.vllm_worker.CpuLoRAOps` (the in-process engine sets it; `vllm serve` replicas take the
same flag, with this repository on their PYTHONPATH).

vLLM imports this module by that name in each worker before the model loads; that import is the
one hook a plain `vllm serve` offers, so it installs the CPU LoRA ops (`serving.cpu_lora_ops`:
faster, and no adapter delta for base-model tokens) right here. GPU workers never call those ops.
The app process itself never imports this module."""

from serving import cpu_lora_ops

cpu_lora_ops.install()


class CpuLoRAOps:
    """The worker extension class. Its method lets the app check, over vLLM's collective_rpc,
    that the ops are in place in every worker."""

    def cpu_lora_ops_installed(self) -> bool:
        from vllm.lora.ops.torch_ops import lora_ops

        return all(getattr(lora_ops, name) is op for name, op in cpu_lora_ops.OPS.items())
