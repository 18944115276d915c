"""The in-process vLLM engine and vLLM's own OpenAI serving classes on top of it.

We build on vLLM's `OpenAIServingChat` / `OpenAIServingModels` rather than re-implementing the
protocol: chat templates, sampling validation, streaming chunks and runtime LoRA loading are
theirs. What is ours (storing exchanges, returning ids) lives in `serving.chat`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from typing import AsyncIterator

from serving.config import EngineConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActiveModel:
    """What a new request is served by: the base model or one LoRA adapter version."""

    name: str  # the name vLLM knows it by (served base name or "adapter-v<version>")
    adapter_version: int | None  # None: the base model


def adapter_name(version: int) -> str:
    # vLLM keys runtime LoRAs by name and gives each name a fresh lora_int_id; one name per
    # version means an id is never reused for different weights.
    return f"adapter-v{version}"


# Imported by vLLM in each worker process: see serving/vllm_worker.py.
WORKER_EXTENSION = "serving.vllm_worker.CpuLoRAOps"


def vllm_cli_args(cfg: EngineConfig, *, model_path: str, served_name: str) -> list[str]:
    args = [
        "--model", model_path,
        "--served-model-name", served_name,
        "--max-model-len", str(cfg.max_model_len),
        "--enable-lora",
        "--max-lora-rank", str(cfg.max_lora_rank),
        "--max-loras", str(cfg.max_loras),
        "--max-cpu-loras", str(max(cfg.max_loras, 4)),
        "--max-num-seqs", str(cfg.max_num_seqs),
        "--dtype", cfg.dtype,
        "--gpu-memory-utilization", str(cfg.gpu_memory_utilization),
        "--disable-log-stats",
        "--worker-extension-cls", WORKER_EXTENSION,
    ]
    return args


def cpu_cores_bind(cpu_cores: str) -> str:
    """EngineConfig.cpu_cores as vLLM's VLLM_CPU_OMP_THREADS_BIND value."""
    if cpu_cores != "all":
        return cpu_cores
    # The cores this process may run on (a container or taskset may allow fewer than the machine has).
    return ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))


class Engine:
    """Owns the vLLM AsyncLLM client, vLLM's OpenAI chat/models serving objects and which model
    (base or adapter) answers new requests."""

    def __init__(self, *, client, serving_chat, serving_models, served_name: str, max_model_len: int):
        self.client = client
        self.serving_chat = serving_chat
        self.serving_models = serving_models
        self.served_name = served_name
        self.max_model_len = max_model_len
        self.active = ActiveModel(name=served_name, adapter_version=None)

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, cfg: EngineConfig, *, model_path: str, served_name: str) -> AsyncIterator["Engine"]:
        """Start vLLM in this process (its engine core runs in a spawned child) and stop it on exit."""
        # Must be set before vLLM reads its environment; an explicit user setting wins.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cfg.kv_cache_gib))
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", cpu_cores_bind(cfg.cpu_cores))
        from starlette.datastructures import State
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.entrypoints.launchers.api_server.app_state import init_app_state
        from vllm.entrypoints.launchers.api_server.entry import build_async_engine_client_from_engine_args
        from vllm.entrypoints.launchers.cli_args import make_arg_parser
        from vllm.utils.argparse_utils import FlexibleArgumentParser

        args = make_arg_parser(FlexibleArgumentParser()).parse_args(
            vllm_cli_args(cfg, model_path=model_path, served_name=served_name)
        )
        engine_args = AsyncEngineArgs.from_cli_args(args)
        async with build_async_engine_client_from_engine_args(engine_args) as client:
            if not all(await client.collective_rpc("cpu_lora_ops_installed")):
                raise RuntimeError("vLLM's workers did not load serving.vllm_worker.")
            state = State()
            await init_app_state(client, state, args, await client.get_supported_tasks())
            yield cls(
                client=client,
                serving_chat=state.openai_serving_chat,
                serving_models=state.openai_serving_models,
                served_name=served_name,
                max_model_len=cfg.max_model_len,
            )

    async def chat(self, request):
        """vLLM's chat completion: a ChatCompletionResponse, an ErrorResponse, or (stream=True) an
        async generator of SSE strings."""
        return await self.serving_chat.create_chat_completion(request, None)

    async def models(self):
        return await self.serving_models.show_available_models()

    async def load_adapter(self, version: int, path: str) -> None:
        """Load a LoRA adapter into the running engine (no restart); a version already loaded is kept
        as it is (its files never change). Raises on failure."""
        from vllm.entrypoints.serve.lora.protocol import LoadLoRAAdapterRequest

        if adapter_name(version) in self.serving_models.lora_requests:
            return

        result = await self.serving_models.load_lora_adapter(
            LoadLoRAAdapterRequest(lora_name=adapter_name(version), lora_path=path)
        )
        if not isinstance(result, str):  # an ErrorResponse
            raise RuntimeError(f"vLLM could not load adapter v{version} from {path}: {result.error.message}")

    def activate(self, version: int | None) -> ActiveModel:
        """Serve new requests with adapter `version` (already loaded) or the base model (None).
        Requests already running keep the model they started with."""
        if version is None:
            self.active = ActiveModel(name=self.served_name, adapter_version=None)
        else:
            name = adapter_name(version)
            if name not in self.serving_models.lora_requests:
                raise KeyError(f"Adapter v{version} is not loaded.")
            self.active = ActiveModel(name=name, adapter_version=version)
        return self.active
