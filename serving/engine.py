"""The in-process vLLM engine and vLLM's own OpenAI serving classes on top of it.

We build on vLLM's `OpenAIServingChat` / `OpenAIServingModels` rather than re-implementing the
protocol: chat templates, sampling validation, streaming chunks and runtime LoRA loading are
theirs. What is ours (storing exchanges, returning ids) lives in `serving.chat`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import os
from typing import AsyncIterator

from serving.backend import ActiveModel, EngineBackend, adapter_name
from serving.config import EngineConfig

log = logging.getLogger(__name__)


# Imported by vLLM in each worker process: see serving/vllm_worker.py.
WORKER_EXTENSION = "serving.vllm_worker.CpuLoRAOps"

MERGE_POLL_S = 0.02  # how often a waiting merge looks at the requests in flight
MERGE_ENV = "CHAT_MERGE_ACTIVE_ADAPTER"  # the worker's copy: serving.merged_lora.MERGE_ENV

# The base model as a LoRA with no weights: while an adapter is merged into the weights (or being merged),
# base-model requests run through it (see serving/merged_lora.py). Users never see this name.
NULL_ADAPTER = "null-adapter"


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


def merges_on_this_machine(cfg: EngineConfig) -> bool:
    """Merging is built for vLLM's CPU path (its packed weights, its torch LoRA ops). On a GPU the
    engine serves adapters through vLLM's own LoRA kernels, as before: that path is tested there,
    merging is not yet."""
    from vllm.platforms import current_platform

    if cfg.merge_active_adapter and not current_platform.is_cpu():
        log.info("Adapters are served as LoRAs: merging the active adapter is for CPU engines.")
        return False
    return cfg.merge_active_adapter


class Engine(EngineBackend):
    """Owns the vLLM AsyncLLM client, vLLM's OpenAI chat/models serving objects and which model
    (base or adapter) answers new requests."""

    def __init__(self, *, client, serving_chat, serving_models, served_name: str, max_model_len: int,
                 merge: bool = False):
        self.client = client
        self.serving_chat = serving_chat
        self.serving_models = serving_models
        self.served_name = served_name
        self.max_model_len = max_model_len
        # With merging, every request names the LoRA of its version: what is merged changes under running
        # requests, the meaning of a LoRA name never does. The one exception: while nothing is merged or
        # being merged, base-model requests name no LoRA at all, as on plain vLLM (a LoRA request costs the
        # worker its adapter bookkeeping on every step, even one that adds nothing), and a merge first
        # waits for those to finish: they run on whatever is in the weights.
        self.merging = merge
        self.merged: int | None = None  # the version in the weights (None: the base model)
        self.plain_base = True  # base-model requests may run without a LoRA now
        self.running: collections.Counter[str] = collections.Counter()  # requests in flight per LoRA name
        self._merging = asyncio.Lock()  # one merge at a time
        self._pending_merge: asyncio.Task | None = None  # a merge waiting for the old version to drain
        self.active = ActiveModel(name=self.base_name, adapter_version=None)

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, cfg: EngineConfig, *, model_path: str, served_name: str) -> AsyncIterator["Engine"]:
        """Start vLLM in this process (its engine core runs in a spawned child) and stop it on exit."""
        # Must be set before vLLM reads its environment; an explicit user setting wins.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cfg.kv_cache_gib))
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", cpu_cores_bind(cfg.cpu_cores))
        # Read by serving/vllm_worker.py in the engine's worker (a spawned process: its one channel).
        merge = merges_on_this_machine(cfg)
        os.environ[MERGE_ENV] = "1" if merge else "0"
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
            engine = cls(
                client=client,
                serving_chat=state.openai_serving_chat,
                serving_models=state.openai_serving_models,
                served_name=served_name,
                max_model_len=cfg.max_model_len,
                merge=merge,
            )
            if engine.merging:
                await engine.load_null_adapter()
            yield engine

    async def load_null_adapter(self) -> None:
        from serving.merged_lora import NULL_ADAPTER_PATH

        try:
            await self.load_lora(NULL_ADAPTER, NULL_ADAPTER_PATH)
        except RuntimeError as e:
            raise RuntimeError(f"vLLM could not load the base model's null adapter: {e}") from None

    async def chat(self, request):
        """vLLM's chat completion: a ChatCompletionResponse, an ErrorResponse, or (stream=True) an
        async generator of SSE strings. Requests in flight are counted per model name (see merge)."""
        if self.merging and request.model == self.served_name and not self.plain_base:
            request.model = NULL_ADAPTER  # something is (being) merged: the base model is exact only as a LoRA
        name = request.model
        self.running[name] += 1
        try:
            result = await self.serving_chat.create_chat_completion(request, None)
        except BaseException:
            self.running[name] -= 1
            raise
        if not inspect.isasyncgen(result):
            self.running[name] -= 1
            return result
        return self._counted(result, name)

    async def _counted(self, stream, name: str):
        try:
            async for event in stream:
                yield event
        finally:
            self.running[name] -= 1
            await stream.aclose()

    async def models(self):
        listed = await self.serving_models.show_available_models()
        listed.data = [card for card in listed.data if card.id != NULL_ADAPTER]
        return listed

    async def load_adapter(self, version: int, path: str) -> None:
        """Load a LoRA adapter into the running engine (no restart); a version already loaded is kept
        as it is (its files never change). Raises on failure."""
        if adapter_name(version) in self.serving_models.lora_requests:
            return
        try:
            await self.load_lora(adapter_name(version), path)
        except RuntimeError as e:
            raise RuntimeError(f"vLLM could not load adapter v{version} from {path}: {e}") from None

    async def load_lora(self, name: str, path: str) -> None:
        """Load the LoRA in `path` under `name`; raises RuntimeError with vLLM's reason."""
        from vllm.entrypoints.serve.lora.protocol import LoadLoRAAdapterRequest

        result = await self.serving_models.load_lora_adapter(LoadLoRAAdapterRequest(lora_name=name, lora_path=path))
        if not isinstance(result, str):  # an ErrorResponse
            raise RuntimeError(result.error.message)

    async def unload_lora(self, name: str) -> None:
        """Forget the LoRA `name` and free its place in the workers (a round's evaluation candidate, used
        once). Requests naming it must have finished."""
        from vllm.entrypoints.serve.lora.protocol import UnloadLoRAAdapterRequest

        request = self.serving_models.lora_requests.get(name)
        if request is None:
            return
        await self.serving_models.unload_lora_adapter(UnloadLoRAAdapterRequest(lora_name=name))
        await self.client.remove_lora(request.lora_int_id)  # the merge state forgets it at the next merge

    @property
    def base_name(self) -> str:
        return self.served_name if self.plain_base else NULL_ADAPTER

    def has_adapter(self, name: str) -> bool:
        return name in self.serving_models.lora_requests

    def replica_status(self) -> list[dict]:
        return []

    async def merge(self, version: int | None) -> None:
        """Merge adapter `version` (None: none) into the engine's weights, so that it serves at the
        base model's speed; every other version stays exact through its LoRA. An adapter that
        cannot be merged (see serving/merged_lora.py) keeps being served through its LoRA.

        While requests of the merged version are still running, merging now would put all of them
        on a LoRA for the rest of their answers (16 streams: +60 ms on the next request's first
        token); instead the merge waits in the background until the new version has at least as
        many requests running as the old one (at once when nothing runs: a lone user's next
        request is at full speed), and happens only if `version` is still the one served then.
        Base-model requests that started while nothing was merged run without a LoRA: a merge always
        waits for the last of them (and none starts once a merge is asked for)."""
        if not self.merging or version == self.merged:
            return
        if version is not None:
            self.plain_base = False  # from now on base-model requests take the null adapter
        if self.running[self._lora_name(self.merged)] or self.running[self.served_name]:
            self._pending_merge = asyncio.create_task(self._merge_when_worth_it(version))
            return
        await self._merge_now(version)

    def _lora_name(self, version: int | None) -> str:
        return self.base_name if version is None else adapter_name(version)

    async def _merge_when_worth_it(self, version: int | None) -> None:
        old, new = self._lora_name(self.merged), self._lora_name(version)
        # Requests without a LoRA run on whatever is in the weights: the last of them must finish first.
        while (self.running[old] and self.running[new] < self.running[old]) or self.running[self.served_name]:
            await asyncio.sleep(MERGE_POLL_S)
        if self.active.adapter_version == version and self.merged != version:
            try:
                await self._merge_now(version)
            except Exception as e:  # what serves stays exact through its LoRA, only slower
                log.error("Merging adapter v%s failed: %s", version, e)
        elif self._pending_merge is asyncio.current_task() and not self._merging.locked():
            # Skipped, no newer merge waits and none is under way (one that is sets this when it ends).
            self.plain_base = self.merged is None

    async def _merge_now(self, version: int | None) -> None:
        async with self._merging:
            if version == self.merged:
                return
            request = None if version is None else self.serving_models.lora_requests.get(adapter_name(version))
            if version is not None and request is None:
                raise KeyError(f"Adapter v{version} is not loaded.")
            if self.running[self.served_name]:  # merge() defers until they finish; only a direct call can see one
                raise RuntimeError("Requests without a LoRA are running; merging now would change their weights.")
            try:
                await self._merge_rpc(version, request)
            finally:
                self.plain_base = self.merged is None
            if self.active.adapter_version is None:  # new base-model requests: without a LoRA again, or with one
                self.active = ActiveModel(name=self.base_name, adapter_version=None)

    async def _merge_rpc(self, version: int | None, request) -> None:
        lora_id = None if request is None else request.lora_int_id
        reasons = await self.client.collective_rpc("merge_adapter", args=(lora_id,))
        if request is not None and "not-loaded" in reasons:  # evicted from the worker's cache: load it again
            await self.client.add_lora(request)
            reasons = await self.client.collective_rpc("merge_adapter", args=(lora_id,))
        if any(reasons):
            log.warning("Adapter v%s is served through its LoRA, not merged: %s", version,
                        "; ".join(r for r in reasons if r))
            return
        self.merged = version
