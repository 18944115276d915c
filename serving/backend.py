"""What ChatService, AdapterManager and the API need from an engine, whichever serves: vLLM in this
process (serving/engine.py) or vLLM replicas over HTTP (serving/remote.py). A new kind of engine is
one module with a class that subclasses EngineBackend (so it inherits `activate`) and one line in
app.py that starts it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ActiveModel:
    """What a new request is served by: the base model or one LoRA adapter version."""

    name: str  # the name the engine knows it by (its base name or "adapter-v<version>")
    adapter_version: int | None  # None: the base model


def adapter_name(version: int) -> str:
    # vLLM keys runtime LoRAs by name and gives each name a fresh lora_int_id; one name per
    # version means an id is never reused for different weights.
    return f"adapter-v{version}"


class EngineBackend(Protocol):
    served_name: str  # the model name users see (vLLM's --served-model-name)
    max_model_len: int
    active: ActiveModel  # what new requests are served by; a request keeps the one it started with

    async def chat(self, request):
        """vLLM's chat completion: a response, an error response, or (stream=True) an async
        generator of SSE strings."""

    async def models(self):
        """The served models, as vLLM's /v1/models lists them."""

    async def load_adapter(self, version: int, path: str) -> None:
        """Load adapter `version` (no restart); a version already loaded is kept. Raises on failure."""

    async def merge(self, version: int | None) -> None:
        """Make `version` the cheapest to serve where the engine can (see serving/merged_lora.py);
        what every version answers does not change."""

    def has_adapter(self, name: str) -> bool:
        """Whether an adapter of that name is loaded, and can be activated."""

    def replica_status(self) -> list[dict]:
        """One entry per vLLM replica behind this engine (none for an in-process engine)."""

    @property
    def base_name(self) -> str:
        """The name requests for the base model carry."""
        return self.served_name

    def activate(self, version: int | None) -> ActiveModel:
        """Serve new requests with adapter `version` (already loaded) or the base model (None).
        Requests already running keep the model they started with."""
        if version is None:
            self.active = ActiveModel(name=self.base_name, adapter_version=None)
        else:
            name = adapter_name(version)
            if not self.has_adapter(name):
                raise KeyError(f"Adapter v{version} is not loaded.")
            self.active = ActiveModel(name=name, adapter_version=version)
        return self.active
