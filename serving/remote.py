"""Serving through remote `vllm serve` replicas instead of the in-process engine (`--vllm-url`).

`RemoteEngine` has the interface of `serving.engine.Engine` (chat, models, load_adapter, activate,
active, served_name, max_model_len), so ChatService, AdapterManager and the API do not know
whether vLLM runs in this process or on other machines. The protocol stays vLLM's: requests are
sent as the JSON of vLLM's own `ChatCompletionRequest`, answers come back as vLLM's
`ChatCompletionResponse` / `ErrorResponse` objects or as vLLM's own SSE strings.

What is ours: which replicas take traffic (round robin over those that answer), failing a
request over to another replica while nothing has reached the client yet, and keeping every
replica's runtime LoRA adapters in step, so that switching to an adapter is safe on all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from dataclasses import dataclass, field
from typing import AsyncIterator

import httpx

from serving.backend import ActiveModel, EngineBackend, adapter_name
from storage.secrets import read_secret

log = logging.getLogger(__name__)


@dataclass
class RemoteConfig:
    url: str = field(
        default="",
        metadata={"help": "Comma-separated base URLs of `vllm serve` replicas (e.g. http://10.0.0.5:8000) to "
                          "serve with instead of an in-process engine; they must serve the weights --model "
                          "names (rounds train on those). Empty: vLLM runs in this process."},
    )
    api_key: str = field(
        default="",
        metadata={"help": "The --api-key the replicas were started with (sent as a Bearer token): 'env:NAME' "
                          "or 'file:PATH' keep it out of the process list; the key itself also works. Empty: "
                          "none."},
    )
    connect_timeout_s: float = field(
        default=3.0,  # a replica on the same private network connects in milliseconds; longer means it is gone
        metadata={"help": "Seconds to wait for a connection to a replica before trying another."},
    )
    read_timeout_s: float = field(
        default=300.0,  # a non-streamed answer arrives in one piece, after the whole generation on a busy CPU
        metadata={"help": "Seconds to wait for a replica's next bytes (for a non-streamed request: the whole "
                          "answer) before counting it as down."},
    )
    health_every_s: float = field(
        default=5.0,  # a returning replica takes traffic again within this, once its adapters are loaded
        metadata={"help": "Seconds between health checks of every replica (down ones rejoin after one passes)."},
    )
    health_timeout_s: float = field(
        default=10.0,  # /health is instant on an idle replica; a loaded CPU box can take seconds
        metadata={"help": "Seconds a replica's /health and /v1/models may take before it counts as down."},
    )
    start_timeout_s: float = field(
        default=900.0,  # replicas started together with the app load their weights first
        metadata={"help": "Seconds the app waits at start for the first replica to answer."},
    )


class ReplicaDown(Exception):
    """A replica did not answer (refused, timed out, dropped the connection, or its engine is dead)."""


@dataclass
class Replica:
    """One `vllm serve` server and what we know of it."""

    url: str
    up: bool = False  # takes traffic: it answered and has every adapter the app may ask for
    loaded: set[str] = field(default_factory=set)  # adapter names known to be loaded on it
    why_down: str = "not checked yet"

    def status(self) -> dict:
        return {"url": self.url, "up": self.up, "why_down": self.why_down or None, "adapters": sorted(self.loaded)}


def split_urls(value: str) -> list[str]:
    return [u.strip().rstrip("/") for u in value.split(",") if u.strip()]


def _error_response(message: str, *, status: int, kind: str):
    from vllm.entrypoints.serve.engine.protocol import ErrorInfo, ErrorResponse

    return ErrorResponse(error=ErrorInfo(message=message, type=kind, code=status))


def _is_unknown_model(status: int, body: bytes) -> bool:
    # vLLM answers 404 "The model `x` does not exist." when a replica lacks an adapter the app
    # activated: the replica restarted since it was checked and must be re-synced.
    return status == 404 and b"does not exist" in body


class RemoteEngine(EngineBackend):
    """Owns the HTTP client to the vLLM replicas, which replicas take traffic, which adapters each
    has loaded (and from which path), and which model (base or adapter) answers new requests."""

    def __init__(self, *, client: httpx.AsyncClient, urls: list[str], cfg: RemoteConfig):
        if not urls:
            raise ValueError("RemoteEngine needs at least one replica URL.")
        self.client = client
        self.cfg = cfg
        self.replicas = [Replica(url=u) for u in urls]
        self.served_name = ""  # learnt from the first replica that answers (its --served-model-name)
        self.max_model_len = 0
        self.active = ActiveModel(name="", adapter_version=None)
        self.adapters: dict[str, str] = {}  # name -> path: loaded on every replica that is up
        self._turn = itertools.count()
        self._sync = asyncio.Lock()  # adapter loads and replica re-joins never interleave

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, cfg: RemoteConfig, *, transport: httpx.AsyncBaseTransport | None = None
                    ) -> AsyncIterator["RemoteEngine"]:
        """Connect to the replicas, wait for the first one to answer, keep checking all of them
        in the background; close everything on exit. `transport` lets tests fake the replicas."""
        # httpx logs every request at INFO: health checks alone would be several lines a second.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        headers = {"Authorization": f"Bearer {read_secret(cfg.api_key, '--vllm-api-key')}"} if cfg.api_key else {}
        timeout = httpx.Timeout(cfg.read_timeout_s, connect=cfg.connect_timeout_s)
        # No pool limit: vLLM queues requests itself, and a streaming chat holds its connection.
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
        async with httpx.AsyncClient(headers=headers, timeout=timeout, limits=limits, transport=transport) as client:
            engine = cls(client=client, urls=split_urls(cfg.url), cfg=cfg)
            await engine.wait_for_first_replica()
            watcher = asyncio.create_task(engine.watch_replicas())
            try:
                yield engine
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    # ---- replica health -------------------------------------------------------------------

    async def wait_for_first_replica(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.start_timeout_s
        while True:
            await self.check_replicas()
            if any(r.up for r in self.replicas):
                return
            if loop.time() > deadline:
                reasons = "; ".join(f"{r.url}: {r.why_down}" for r in self.replicas)
                raise RuntimeError(f"No vLLM replica answered within {self.cfg.start_timeout_s:.0f} s ({reasons}).")
            await asyncio.sleep(min(self.cfg.health_every_s, 2.0))

    async def watch_replicas(self) -> None:
        """Forever: check every replica; a down one that answers again re-joins after its adapters load."""
        while True:
            await asyncio.sleep(self.cfg.health_every_s)
            try:
                await self.check_replicas()
            except Exception:  # the watcher must outlive one bad check; serving does not depend on it
                log.exception("Checking the vLLM replicas failed")

    async def check_replicas(self) -> None:
        await asyncio.gather(*(self.check_replica(r) for r in self.replicas))

    async def check_replica(self, replica: Replica) -> None:
        """Health and adapters of one replica: down if it does not answer, re-joined (adapters
        loaded first) if it answers again, re-synced if it restarted and lost adapters."""
        try:
            names = await self._names_on(replica)
        except ReplicaDown as e:
            self.mark_down(replica, str(e))
            return
        if replica.up and set(self.adapters) <= names:
            replica.loaded = names
            return
        if replica.up:
            self.mark_down(replica, "it no longer has every adapter loaded (restarted?)")
        await self.rejoin(replica)

    async def _names_on(self, replica: Replica) -> set[str]:
        """The replica's engine is alive, serves our base model; returns the adapter names it has."""
        health = await self._get(replica, "/health", timeout=self.cfg.health_timeout_s)
        if health.status_code != 200:
            raise ReplicaDown(f"/health answered {health.status_code}")
        listing = await self._get(replica, "/v1/models", timeout=self.cfg.health_timeout_s)
        if listing.status_code != 200:
            raise ReplicaDown(f"/v1/models answered {listing.status_code}")
        try:
            cards = listing.json()["data"]
        except (ValueError, KeyError, TypeError) as e:
            raise ReplicaDown("/v1/models did not answer vLLM's model list") from e
        base = next((c for c in cards if not c.get("parent")), None)
        if base is None:
            raise ReplicaDown("it lists no base model")
        if not self.served_name:
            self.served_name, self.max_model_len = base["id"], int(base.get("max_model_len") or 0)
            self.active = ActiveModel(name=self.served_name, adapter_version=None)
            log.info("vLLM replicas serve %s (max_model_len %d).", self.served_name, self.max_model_len)
        elif base["id"] != self.served_name:
            raise ReplicaDown(f"it serves {base['id']!r}, the other replicas {self.served_name!r}")
        return {c["id"] for c in cards if c.get("parent")}

    async def rejoin(self, replica: Replica) -> None:
        """Load what the replica lacks (the active adapter first), then let it take traffic.
        An inactive adapter that will not load any more (its files were pruned) is forgotten,
        so that activating it later loads it again everywhere, or fails with a clear error."""
        async with self._sync:
            try:
                have = replica.loaded = await self._names_on(replica)
                missing = [n for n in self.adapters if n not in have]
                missing.sort(key=lambda n: n != self.active.name)  # the active adapter first
                for name in missing:
                    try:
                        await self._load_on(replica, name, self.adapters[name])
                    except ReplicaDown:
                        raise
                    except Exception as e:
                        if name == self.active.name:
                            raise ReplicaDown(f"the active adapter {name} does not load on it: {e}") from e
                        log.warning("Forgetting adapter %s: it does not load on %s any more: %s", name,
                                    replica.url, e)
                        del self.adapters[name]
            except ReplicaDown as e:
                self.mark_down(replica, str(e))
                return
            replica.up, replica.why_down = True, ""
        log.info("vLLM replica %s takes traffic%s.", replica.url,
                 f" (loaded {', '.join(missing)})" if missing else "")

    def mark_down(self, replica: Replica, why: str) -> None:
        if replica.up:
            log.warning("vLLM replica %s is out of rotation: %s", replica.url, why)
        replica.up, replica.why_down = False, why

    def rotation(self) -> list[Replica]:
        """Replicas that take traffic, starting one further along for each request (round robin)."""
        up = [r for r in self.replicas if r.up]
        if not up:
            return []
        start = next(self._turn) % len(up)
        return up[start:] + up[:start]

    async def _get(self, replica: Replica, path: str, *, timeout: float) -> httpx.Response:
        try:
            return await self.client.get(replica.url + path, timeout=timeout)
        except httpx.TransportError as e:  # refused, timed out, dropped
            raise ReplicaDown(f"{type(e).__name__} on {path}") from e

    # ---- the Engine interface -------------------------------------------------------------

    async def chat(self, request):
        """vLLM's chat completion from one replica: a ChatCompletionResponse, an ErrorResponse, or
        (stream=True) an async generator of vLLM's SSE strings. A replica that fails before any
        chunk came back is taken out of rotation and the request goes to the next one."""
        body = request.model_dump(mode="json", exclude_unset=True)
        for replica in self.rotation():
            try:
                if request.stream:
                    return await self._open_stream(replica, body)
                return await self._complete(replica, body)
            except ReplicaDown as e:
                self.mark_down(replica, str(e))
                log.warning("Retrying a chat request on another replica: %s failed (%s).", replica.url, e)
        return _error_response(self._unavailable(), status=503, kind="ServiceUnavailableError")

    def _unavailable(self) -> str:
        return (f"No vLLM replica is answering right now; they are checked again every "
                f"{self.cfg.health_every_s:g} s.")

    async def _send(self, replica: Replica, body: dict) -> httpx.Response:
        """POST the chat request; returns a 200 response with its body unread, or raises ReplicaDown
        (no answer, a 5xx with a failing /health, a replica lacking an adapter) or _Refused (vLLM's
        answer to this request)."""
        req = self.client.build_request("POST", replica.url + "/v1/chat/completions", json=body)
        try:
            response = await self.client.send(req, stream=True)
        except httpx.TransportError as e:
            raise ReplicaDown(f"{type(e).__name__} before any answer") from e
        if response.status_code == 200:
            return response
        try:
            content = await response.aread()
        except httpx.TransportError as e:
            raise ReplicaDown(f"{type(e).__name__} reading an error answer") from e
        finally:
            await response.aclose()
        failed = f"HTTP {response.status_code}: {content[:200].decode(errors='replace')}"
        if _is_unknown_model(response.status_code, content):
            raise ReplicaDown(failed)
        if response.status_code >= 500 and not await self._healthy(replica):
            raise ReplicaDown(failed)
        # A 4xx, or a 5xx from a healthy replica: vLLM's answer to this very request, which
        # another replica would give too (retrying it would take every replica out in turn).
        raise _Refused(content, response.status_code)

    async def _healthy(self, replica: Replica) -> bool:
        try:
            return (await self._get(replica, "/health", timeout=self.cfg.health_timeout_s)).status_code == 200
        except ReplicaDown:
            return False

    async def _complete(self, replica: Replica, body: dict):
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionResponse

        try:
            response = await self._send(replica, body)
        except _Refused as refused:
            return refused.error_response()
        try:
            content = await response.aread()  # the whole answer: nothing has reached the client yet
        except httpx.TransportError as e:
            raise ReplicaDown(f"{type(e).__name__} while the answer was generated") from e
        finally:
            await response.aclose()
        return ChatCompletionResponse.model_validate_json(content)

    async def _open_stream(self, replica: Replica, body: dict):
        """Open the stream and read its first event here, so a replica that accepts the request
        and then fails is still retried elsewhere; later events are relayed as they come."""
        try:
            response = await self._send(replica, body)
        except _Refused as refused:
            return refused.error_response()
        events = _sse_events(response)
        try:
            first = await anext(events)
        except (httpx.TransportError, StopAsyncIteration) as e:
            await response.aclose()
            raise ReplicaDown(f"{type(e).__name__} before the first chunk") from e
        return self._relay(replica, response, first, events)

    async def _relay(self, replica: Replica, response: httpx.Response, first: str, events) -> AsyncIterator[str]:
        try:
            yield first
            try:
                async for event in events:
                    yield event
            except httpx.TransportError as e:
                # Chunks already reached the client: no retry; end the stream the way vLLM ends one
                # that failed (an error event), and take the replica out until it answers again.
                self.mark_down(replica, f"{type(e).__name__} in the middle of a stream")
                yield _error_event(f"The vLLM replica stopped answering mid-answer ({type(e).__name__}).")
                yield "data: [DONE]\n\n"
        finally:
            await response.aclose()  # also when the client hung up: vLLM then aborts the request

    async def models(self):
        """vLLM's model list (base and loaded adapters) from a replica that answers."""
        from vllm.entrypoints.serve.engine.protocol import ModelCard, ModelList

        for replica in self.rotation():
            try:
                response = await self._get(replica, "/v1/models", timeout=self.cfg.read_timeout_s)
            except ReplicaDown as e:
                self.mark_down(replica, str(e))
                continue
            if response.status_code == 200:
                return ModelList.model_validate_json(response.content)
        # Every replica is down: still say what we serve.
        return ModelList(data=[ModelCard(id=self.served_name, max_model_len=self.max_model_len or None),
                               *(ModelCard(id=n, parent=self.served_name, root=p) for n, p in self.adapters.items())])

    async def load_adapter(self, version: int, path: str) -> None:
        """Load a LoRA adapter on every replica that is up; it counts as loaded only when all of
        them have it. A replica that goes down meanwhile gets it when it re-joins. Raises when a
        replica refuses the adapter, or when no replica is up. `path` must be readable by the
        replicas (the same path on their machines: a shared volume)."""
        name = adapter_name(version)
        async with self._sync:
            if name in self.adapters:
                return
            targets = [r for r in self.replicas if r.up]
            results = await asyncio.gather(*(self._load_on(r, name, path) for r in targets), return_exceptions=True)
            refused = []
            for replica, result in zip(targets, results):
                if isinstance(result, ReplicaDown):
                    self.mark_down(replica, f"{result} while loading {name}")
                elif isinstance(result, BaseException):
                    refused.append(f"{replica.url}: {result}")
            if refused:
                raise RuntimeError(f"vLLM could not load adapter v{version} from {path}: {'; '.join(refused)}")
            if not any(r.up for r in targets):
                raise RuntimeError(f"Adapter v{version} was not loaded: {self._unavailable()}")
            self.adapters[name] = path
        log.info("Adapter v%d loaded on %d replica(s).", version, sum(r.up for r in targets))

    async def _load_on(self, replica: Replica, name: str, path: str) -> None:
        if name in replica.loaded:
            return
        try:
            response = await self.client.post(replica.url + "/v1/load_lora_adapter",
                                               json={"lora_name": name, "lora_path": path})
        except httpx.TransportError as e:
            raise ReplicaDown(f"{type(e).__name__} on /v1/load_lora_adapter") from e
        if response.status_code == 404 and '"detail"' in response.text:  # FastAPI's own 404: no such route
            raise RuntimeError("the replica has no /v1/load_lora_adapter (start it with --enable-lora and "
                               "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True)")
        already = response.status_code == 400 and "has already been loaded" in response.text
        if response.status_code >= 500 and '"error"' not in response.text:
            # vLLM's own refusal of bad weights is a 500 with an error body; anything else is the
            # replica failing (a proxy's 502, a dying server).
            raise ReplicaDown(f"HTTP {response.status_code} on /v1/load_lora_adapter")
        if response.status_code != 200 and not already:
            raise RuntimeError(_error_message(response))
        replica.loaded.add(name)

    async def merge(self, version: int | None) -> None:
        """Replicas serve every adapter through its LoRA: merging needs the worker RPC that a plain
        `vllm serve` does not expose (only in its development mode)."""

    def has_adapter(self, name: str) -> bool:
        return name in self.adapters

    def replica_status(self) -> list[dict]:
        return [r.status() for r in self.replicas]


class _Refused(Exception):
    """vLLM refused the request itself (a 4xx): the same answer would come from every replica."""

    def __init__(self, content: bytes, status: int):
        super().__init__(status)
        self.content, self.status = content, status

    def error_response(self):
        from vllm.entrypoints.serve.engine.protocol import ErrorResponse

        try:
            return ErrorResponse.model_validate_json(self.content)
        except ValueError:
            return _error_response(self.content[:500].decode(errors="replace") or f"HTTP {self.status}",
                                   status=self.status, kind="BadRequestError")


async def _sse_events(response: httpx.Response) -> AsyncIterator[str]:
    """vLLM's SSE stream as the strings its in-process generator yields: 'data: ...\\n\\n'."""
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            yield line + "\n\n"


def _error_event(message: str) -> str:
    import json

    return "data: " + json.dumps({"error": {"message": message, "type": "ServiceUnavailableError",
                                            "code": 503}}) + "\n\n"


def _error_message(response: httpx.Response) -> str:
    try:
        return response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {response.text[:300]}"
