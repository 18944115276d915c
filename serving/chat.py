"""Chat service: answers a chat request through the engine and records the exchange.

The protocol work (templates, sampling, chunk format) is vLLM's; what is ours is here: the
prompt and every answer are written to the store, each answer's id is handed back on its choice
(`response_id`) so the client can give feedback on it, and each stored answer names the model
and adapter version that actually produced it.

Store calls run in worker threads (`asyncio.to_thread`), each transaction wholly inside one, so a
database lock held elsewhere delays only the request that waits for it, not every stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

import orjson

from serving.config import SamplingConfig
from serving.backend import ActiveModel, EngineBackend
from storage.errors import InvalidInput, StoreError
from storage.store import FeedbackStore

log = logging.getLogger(__name__)

DEFAULT_MODEL_ALIASES = ("default", "")


class ChatError(Exception):
    """A request we refuse; `status` is the HTTP status the API answers with."""

    def __init__(self, message: str, *, status: int = 400, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.message = message
        self.status = status
        self.kind = kind


@dataclass
class _Choice:
    """What one streamed choice has produced so far."""

    response_id: int
    text: list[str] = field(default_factory=list)
    tokens: int = 0
    ttft_ms: float | None = None
    finish_reason: str | None = None
    latency_ms: float | None = None
    announced: bool = False  # response_id already sent to the client


@dataclass(frozen=True)
class StreamEvent:
    """One streamed chunk: parsed, and vLLM's own SSE text when we left the chunk unchanged."""

    chunk: dict
    sse: str | None


@dataclass(frozen=True)
class Exchange:
    """Where a new exchange is stored: its conversation and the user message being answered."""

    conversation_id: int
    prompt_id: int


def message_text(content: Any) -> str:
    """OpenAI content is a string or a list of parts; we store the text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        part = part if isinstance(part, dict) else getattr(part, "model_dump", lambda: {})()
        if part.get("type") == "text":
            parts.append(part.get("text", ""))
        else:
            raise ChatError("Only text message content is supported.")
    return "".join(parts)


class ChatService:
    """Runs chat requests on the engine for a user and stores prompt, answers and their metadata."""

    def __init__(self, *, engine: EngineBackend, store: FeedbackStore, sampling: SamplingConfig):
        self.engine = engine
        self.store = store
        self.sampling = sampling

    # ---------------------------------------------------------------- request checks

    def prepare(self, request) -> ActiveModel:
        """Fill in our sampling defaults, check limits, and pin the model this request runs on."""
        active = self.engine.active
        known = {self.engine.served_name, active.name, *DEFAULT_MODEL_ALIASES}
        if request.model is not None and request.model not in known:
            raise ChatError(f"The model '{request.model}' does not exist; GET /v1/models lists what is served.",
                            status=404, kind="model_not_found")
        request.model = active.name
        n = request.n or 1
        if not 1 <= n <= self.sampling.max_n:
            raise ChatError(f"n must be between 1 and {self.sampling.max_n}; got {n}.")
        asked = request.max_completion_tokens or request.max_tokens
        if asked is None:
            request.max_tokens = self.sampling.max_tokens
        elif asked > self.sampling.max_tokens_limit:
            raise ChatError(f"max_tokens may be at most {self.sampling.max_tokens_limit}; got {asked}.")
        if getattr(request, "prompt_logprobs", None) is not None or \
                (getattr(request, "echo", False) and getattr(request, "logprobs", False)):
            # vLLM's CPU LoRA path computes a LoRA's logits for the sampled rows only, not for a prompt's: a
            # batch holding such a request and any LoRA request (every request, once an adapter is merged)
            # kills the engine core for every user (einsum size mismatch in punica_cpu.add_lora_logits).
            raise ChatError("Log-probabilities of the prompt (prompt_logprobs, or echo with logprobs) are not "
                            "served; logprobs of the answer are.")
        if request.temperature is None:
            request.temperature = self.sampling.temperature
        if request.top_p is None:
            request.top_p = self.sampling.top_p
        if not request.messages:
            raise ChatError("messages must hold at least one message.")
        last = request.messages[-1]
        if _get(last, "role") != "user":
            raise ChatError("The last message must come from the user.")
        if not message_text(_get(last, "content")).strip():
            raise ChatError("The last user message is empty.")
        return active

    # ---------------------------------------------------------------- storing

    def record_prompt(self, request, *, user: str, source: str) -> Exchange:
        """Store the request's messages as a new conversation thread; the last one is the prompt."""
        with self.store.transaction():
            first_user = next(message_text(_get(m, "content")) for m in request.messages if _get(m, "role") == "user")
            conversation_id = self.store.create_conversation(user=user, title=first_user[:60], source=source)
            parent = None
            for m in request.messages:
                role = _get(m, "role")
                if role not in ("system", "user", "assistant"):
                    raise ChatError(f"Messages with role '{role}' are not supported.")
                parent = self.store.record_message(
                    conversation_id=conversation_id, user=user, role=role,
                    content=message_text(_get(m, "content")), parent_id=parent,
                )
        return Exchange(conversation_id=conversation_id, prompt_id=parent)

    def _sampling_record(self, request) -> dict:
        return {"temperature": request.temperature, "top_p": request.top_p,
                "max_tokens": request.max_completion_tokens or request.max_tokens, "n": request.n or 1,
                "seed": request.seed}

    # ---------------------------------------------------------------- answering

    async def complete(self, request, *, user: str, exchange: Exchange | None = None, source: str = "api") -> dict:
        """Non-streaming: run, then store prompt and answers in one transaction."""
        active = self.prepare(request)
        client_wants_ids = bool(request.return_token_ids)
        request.return_token_ids = True  # exact per-answer token counts for the store
        start = time.perf_counter()
        result = await self._engine_chat(request)
        latency_ms = (time.perf_counter() - start) * 1000
        body = result.model_dump(mode="json", exclude_none=True)
        exchange = await asyncio.to_thread(self._store_completion, request, body, user=user, exchange=exchange,
                                           source=source, active=active, latency_ms=latency_ms)
        if not client_wants_ids:
            for choice in body["choices"]:
                choice.pop("token_ids", None)
            body.pop("prompt_token_ids", None)
        body["conversation_id"] = exchange.conversation_id
        body["adapter_version"] = active.adapter_version
        return body

    def _store_completion(self, request, body: dict, *, user: str, exchange: Exchange | None, source: str,
                          active: ActiveModel, latency_ms: float) -> Exchange:
        """Store prompt and answers of a non-streamed reply in one transaction; tags each choice of
        `body` with its response_id."""
        with self.store.transaction():
            exchange = exchange or self.record_prompt(request, user=user, source=source)
            ids = self.store.start_answers(
                conversation_id=exchange.conversation_id, user=user, parent_id=exchange.prompt_id,
                n=len(body["choices"]), model=self.engine.served_name,
                adapter_version=active.adapter_version, sampling=self._sampling_record(request),
            )
            prompt_tokens = body.get("usage", {}).get("prompt_tokens")
            for choice in body["choices"]:
                rid = ids[choice["index"]]
                self.store.finish_answer(
                    rid, content=message_text(choice["message"].get("content")),
                    completion_tokens=len(choice.get("token_ids") or []), prompt_tokens=prompt_tokens,
                    latency_ms=latency_ms, finish_reason=choice.get("finish_reason"),
                )
                choice["response_id"] = rid
        return exchange

    async def stream(self, request, *, user: str, exchange: Exchange | Callable[[], Exchange] | None = None,
                     source: str = "api") -> AsyncIterator[StreamEvent]:
        """Streaming: yields vLLM's chunks, each choice's first chunk carrying its `response_id`.
        Answers are written when their stream ends (also when it is cut off). `exchange` is where
        the prompt is stored, or a function that stores it, called only once vLLM has accepted the
        request; None stores the request's messages as a new conversation."""
        active = self.prepare(request)
        client_wants_usage = bool(request.stream_options and request.stream_options.include_usage)
        if not client_wants_usage:
            from vllm.entrypoints.generate.base.protocol import StreamOptions

            # The final usage chunk gives the exact prompt (and, for n=1, answer) token counts.
            request.stream_options = StreamOptions(include_usage=True)
        start = time.perf_counter()
        # vLLM validates and renders the prompt here (too long, bad params): fail before writing.
        gen = await self._engine_chat(request)
        try:
            exchange, ids = await asyncio.to_thread(self._start_stream, request, exchange, user=user, source=source,
                                                    active=active)
        except BaseException:
            await gen.aclose()
            raise
        choices = [_Choice(response_id=i) for i in ids]
        usage: dict = {}
        status = "incomplete"  # until [DONE] arrives: a client that hangs up leaves a partial answer
        try:
            async for sse in gen:
                chunk = _parse_sse(sse)
                if chunk is None:
                    status = "complete"
                    break
                if "error" in chunk:
                    raise ChatError(chunk["error"].get("message", "generation failed"), status=500,
                                    kind="server_error")
                if not chunk.get("choices"):
                    usage = chunk.get("usage") or usage
                    if client_wants_usage:
                        yield StreamEvent(chunk, sse)
                    continue
                now_ms = (time.perf_counter() - start) * 1000
                # Most chunks pass through as vLLM wrote them; only a choice's first chunk is
                # rewritten, to carry its response_id (and the conversation and adapter).
                changed = False
                for c in chunk["choices"]:
                    changed |= _track(choices[c["index"]], c, now_ms)
                if changed:
                    chunk["conversation_id"] = exchange.conversation_id
                    chunk["adapter_version"] = active.adapter_version
                yield StreamEvent(chunk, None if changed else sse)
        finally:
            elapsed_ms = (time.perf_counter() - start) * 1000
            if len(choices) == 1 and usage.get("completion_tokens") is not None:
                choices[0].tokens = usage["completion_tokens"]
            try:
                await gen.aclose()  # first: the engine request ends even when the write below fails
            finally:
                # Shielded: when the client hangs up, Starlette cancels this request again at every
                # await, and an unshielded write could then be dropped before its thread starts.
                await asyncio.shield(asyncio.to_thread(
                    self._finish, choices, prompt_tokens=usage.get("prompt_tokens"), status=status,
                    elapsed_ms=elapsed_ms))

    def _start_stream(self, request, exchange: Exchange | Callable[[], Exchange] | None, *, user: str, source: str,
                      active: ActiveModel) -> tuple[Exchange, list[int]]:
        """Store the prompt (unless stored already) and the answers' 'streaming' rows in one transaction
        and one worker thread: a failure leaves neither, and a request costs one commit before its first
        token instead of two (at 64 streams the thread hops and commits were the app's largest cost)."""
        with self.store.transaction():
            if callable(exchange):  # the UI's new rows, stored now that vLLM has accepted the request
                exchange = exchange()
            exchange = exchange or self.record_prompt(request, user=user, source=source)
            ids = self.store.start_answers(
                conversation_id=exchange.conversation_id, user=user, parent_id=exchange.prompt_id,
                n=request.n or 1, model=self.engine.served_name, adapter_version=active.adapter_version,
                sampling=self._sampling_record(request),
            )
        return exchange, ids

    async def _engine_chat(self, request):
        """The engine's answer, with vLLM's refusals (prompt too long, bad sampling values) turned
        into ChatErrors before anything is stored."""
        from vllm.exceptions import VLLMClientError

        try:
            result = await self.engine.chat(request)
        except VLLMClientError as e:
            raise ChatError(e.args[0] if e.args else str(e)) from e
        _raise_if_error(result)
        return result

    def _finish(self, choices: list[_Choice], *, prompt_tokens, status: str, elapsed_ms: float) -> None:
        """Write the streamed answers. If that fails they are marked 'incomplete' instead of being
        left 'streaming', and the error goes on to the client."""
        try:
            with self.store.transaction():
                for c in choices:
                    self.store.finish_answer(
                        c.response_id, content="".join(c.text), completion_tokens=c.tokens,
                        prompt_tokens=prompt_tokens, latency_ms=c.latency_ms or elapsed_ms, ttft_ms=c.ttft_ms,
                        finish_reason=c.finish_reason, status=status,
                    )
        except Exception as e:
            ids = [c.response_id for c in choices]
            log.error("Could not store answers %s (%s); marking them incomplete.", ids, e)
            self._mark_incomplete(ids)
            raise

    def _mark_incomplete(self, ids: list[int]) -> None:
        try:
            self.store.mark_interrupted_answers(ids)
        except Exception as e:  # the database is still failing: the next start-up marks them instead
            log.error("Answers %s stay 'streaming' until the next start-up marks them incomplete: %s", ids, e)

    # ---------------------------------------------------------------- UI helpers

    async def reply(self, *, user: str, messages: list[dict[str, str]], save: Callable[[], Exchange], n: int = 1,
                    temperature: float | None = None, top_p: float | None = None,
                    max_tokens: int | None = None, source: str = "chat") -> AsyncIterator[tuple[list[int], list[str]]]:
        """Answer `messages`, the thread up to the user message being answered (UI chat, regenerate,
        compare). `save` stores what of it is new and says where; it runs only once the engine has
        accepted the request, so a refused prompt (too long, bad values) leaves no row. Yields
        (response_ids, texts so far) as tokens arrive."""
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

        request = ChatCompletionRequest(
            messages=messages, model=None, n=n, stream=True, temperature=temperature, top_p=top_p,
            max_tokens=max_tokens,
        )
        ids: list[int] = [0] * n
        texts = [""] * n
        async for event in self.stream(request, user=user, exchange=save, source=source):
            for c in event.chunk["choices"]:
                i = c["index"]
                if "response_id" in c:
                    ids[i] = c["response_id"]
                texts[i] += c.get("delta", {}).get("content") or ""
            yield ids, texts


def _get(message, key):
    return message.get(key) if isinstance(message, dict) else getattr(message, key, None)


def _parse_sse(sse: str) -> dict | None:
    """One `data: {...}` event -> dict; None for the final `data: [DONE]`."""
    payload = sse[len("data: "):].strip() if sse.startswith("data: ") else sse.strip()
    if payload == "[DONE]":
        return None
    return orjson.loads(payload)  # on the per-token path: several times faster than json


def _track(state: _Choice, choice: dict, now_ms: float) -> bool:
    """Accumulate one chunk's choice into its answer; tag the choice's first chunk with the id
    (returns True when it did)."""
    first = not state.announced
    if first:
        choice["response_id"] = state.response_id
        state.announced = True
    delta = choice.get("delta") or {}
    content = delta.get("content")
    if content:
        if state.ttft_ms is None:
            state.ttft_ms = now_ms
        state.text.append(content)
    if not (first and "role" in delta):
        # vLLM sends one chunk per decoding step per choice after the role chunk: one token each.
        state.tokens += 1
    if choice.get("finish_reason"):
        state.finish_reason = choice["finish_reason"]
        state.latency_ms = now_ms
    return first


def _raise_if_error(result) -> None:
    error = getattr(result, "error", None)
    if error is not None and not hasattr(result, "choices"):
        status = int(getattr(error, "code", 400) or 400)
        raise ChatError(error.message, status=status if 400 <= status < 600 else 400,
                        kind=getattr(error, "type", "invalid_request_error"))


__all__ = ["ChatService", "ChatError", "Exchange", "StoreError", "InvalidInput", "message_text"]
