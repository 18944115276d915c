"""The serving engine samples a round's evaluation answers (--eval-on-engine): the gate then judges answers
as long as the ones users get, sampled 5-15x faster than the round process's own decode loop could on the
same cores.

The round process (`python -m align run`, started by the app: loop.rounds) trains the candidate, then
posts the held-out prompts here once per model, the candidate (its adapters/.tmp-*/ folder, loaded
under a name of its own and unloaded afterwards) and the reference (a registered version or the base
model); it scores the answers with its reward model and takes their KL to the base model itself
(align.served_eval). Nothing here is stored: these are not users' conversations.

Only the round the app started can call this: the route takes the secret the app made at start-up and
gave that process in its environment (EVAL_TOKEN_ENV), and refuses every other caller with a 401. A
round started from a shell or on a remote trainer has no secret and samples in its own process.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from common.eval_samples import EVAL_TOKEN_ENV, EVAL_URL_ENV, ROUTE, TOKEN_HEADER
from serving.adapters import AdapterError, AdapterManager
from serving.api import ApiError, parse_body, read_json
from serving.backend import adapter_name
from serving.guard import WILDCARD_BINDS
from storage.adapters import ROUND_PREFIX

MAX_PROMPTS = 256  # the gate evaluates 32 by default; far more would hold the engine for minutes
MAX_ANSWERS_PER_PROMPT = 16
# Answers sampled at once: 32 sequences keep the engine's batch busy (throughput on 2 cores barely grows
# past ~32) while leaving the rest of its 64 slots to users chatting meanwhile. One request per answer,
# not per prompt: a prompt's n answers end at different lengths, and a request holding its slots until its
# longest answer ends left the batch half empty on a candidate whose answers vary in length.
CONCURRENT_ANSWERS = 32


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Message(_Body):
    role: Literal["system", "user", "assistant"]
    content: StrictStr


class ModelChoice(_Body):
    """Exactly one of: a registered `version` (null: the base model), or the round's `candidate_dir`."""

    version: StrictInt | None = None
    candidate_dir: StrictStr | None = None


class EvalSamplesBody(_Body):
    model: ModelChoice
    prompts: Annotated[list[Annotated[list[Message], Field(min_length=1)]], Field(min_length=1,
                                                                                   max_length=MAX_PROMPTS)]
    n: Annotated[StrictInt, Field(ge=1, le=MAX_ANSWERS_PER_PROMPT)]
    max_tokens: Annotated[StrictInt, Field(ge=1)] | None = None  # None: the app's default answer length
    temperature: Annotated[float, Field(gt=0, le=2)] = 1.0
    seed: StrictInt = 0


async def _all_or_none(coroutines: list) -> list:
    """Every result in order; if one fails (or the caller goes away), the others are cancelled and have
    ended before the error is raised. `asyncio.gather` alone would leave them running: a candidate unloaded
    under its own requests, the engine busy for minutes with answers nobody reads. (A TaskGroup cancels too,
    but wraps the ApiError the route must return in an ExceptionGroup.)"""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()  # vLLM aborts a request whose caller is cancelled
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


@dataclass(frozen=True)
class EvalEndpoint:
    """What the round process is told: where to post and the secret to send."""

    url: str
    token: str

    def environment(self) -> dict[str, str]:
        return {EVAL_URL_ENV: self.url, EVAL_TOKEN_ENV: self.token}


def new_endpoint(host: str, port: int) -> EvalEndpoint:
    """The route on this app as a process on the same machine reaches it, with a fresh secret. A wildcard
    bind is reached on the loopback address; a bound address on itself (the Host check accepts both)."""
    if host in WILDCARD_BINDS:
        host = "::1" if host == "::" else "127.0.0.1"
    authority = f"[{host}]" if ":" in host else host
    return EvalEndpoint(url=f"http://{authority}:{port}{ROUTE}", token=secrets.token_urlsafe(32))


class EvalSampler:
    """Samples answers of one model (a version, the base model or a round's candidate folder) with the
    engine, `n` per prompt, with the token ids the round needs for its KL."""

    def __init__(self, *, engine, adapters: AdapterManager, adapters_dir: str | Path, default_max_tokens: int,
                 max_tokens_limit: int):
        self.engine = engine
        self.adapters = adapters
        self.adapters_dir = Path(adapters_dir).resolve()
        self.default_max_tokens = default_max_tokens
        self.max_tokens_limit = max_tokens_limit

    async def sample(self, body: EvalSamplesBody) -> dict:
        max_tokens = body.max_tokens or self.default_max_tokens
        if max_tokens > self.max_tokens_limit:
            raise ApiError(f"max_tokens {max_tokens} is above the app's limit of {self.max_tokens_limit}.")
        name, loaded_here = await self._model_name(body.model)
        try:
            gate = asyncio.Semaphore(CONCURRENT_ANSWERS)

            async def one(i: int, j: int) -> tuple[list[int], dict]:
                async with gate:  # answer j of prompt i has a seed of its own: reruns see the same samples
                    return await self._sample_answer(name, body.prompts[i], body, seed=body.seed + i * body.n + j,
                                                     max_tokens=max_tokens)

            answers = await _all_or_none([one(i, j) for i in range(len(body.prompts)) for j in range(body.n)])
            prompts = [{"prompt_token_ids": answers[i * body.n][0],
                        "answers": [answer for _, answer in answers[i * body.n: (i + 1) * body.n]]}
                       for i in range(len(body.prompts))]
        finally:
            if loaded_here:
                await self.engine.unload_lora(name)
        return {"model": name, "max_tokens": max_tokens, "prompts": prompts}

    async def _model_name(self, choice: ModelChoice) -> tuple[str, bool]:
        """The engine's name for the chosen model, and whether it was loaded for this call only."""
        if choice.candidate_dir is not None:
            if choice.version is not None:
                raise ApiError("Name either a version or a candidate_dir, not both.")
            folder = self._candidate_folder(choice.candidate_dir)
            name = f"round-eval-{folder.name.removeprefix(ROUND_PREFIX)}"
            try:
                await self.engine.load_lora(name, str(folder))
            except Exception as e:  # vLLM refuses corrupt weights, wrong ranks or another base model
                raise ApiError(f"vLLM could not load the candidate in {folder}: {e}", status=422) from e
            return name, True
        if choice.version is None:
            return self.engine.served_name, False  # Engine.chat sends it to the null adapter while one is merged
        try:
            await self.adapters.prepare(choice.version)  # at once when loaded (the active version is)
        except AdapterError as e:
            raise ApiError(f"Adapter v{choice.version} cannot be sampled: {e.message}", status=409) from e
        return adapter_name(choice.version), False

    def _candidate_folder(self, candidate_dir: str) -> Path:
        """A round's adapters/.tmp-*/ folder of this app's data dir, and nothing else: the engine loads
        what it is given."""
        folder = Path(candidate_dir)
        if not folder.is_absolute() or folder.is_symlink():
            raise ApiError("candidate_dir must be the absolute path of a round's folder.")
        folder = folder.resolve()
        if folder.parent != self.adapters_dir or not folder.name.startswith(ROUND_PREFIX) or not folder.is_dir():
            raise ApiError(f"candidate_dir must be a round's folder {self.adapters_dir}/{ROUND_PREFIX}*.")
        return folder

    async def _sample_answer(self, name: str, prompt: list[Message], body: EvalSamplesBody, *, seed: int,
                             max_tokens: int) -> tuple[list[int], dict]:
        """One answer to the prompt, and the prompt's token ids."""
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

        # Every sampling setting explicit: the answers must come from the policy's own distribution at this
        # temperature (the round's KL estimate assumes it), whatever defaults the model's files carry.
        request = ChatCompletionRequest(model=name, messages=[m.model_dump() for m in prompt], n=1,
                                        max_completion_tokens=max_tokens, temperature=body.temperature, top_p=1.0, top_k=0,
                                        min_p=0.0, repetition_penalty=1.0, seed=seed, return_token_ids=True)
        response = await self.engine.chat(request)
        error = getattr(response, "error", None)
        if error is not None:  # vLLM's ErrorResponse: a prompt too long for the model, say
            raise ApiError(f"The engine refused a prompt: {error.message}", status=422)
        choice = response.choices[0]
        return list(response.prompt_token_ids), {"text": choice.message.content or "",
                                                  "token_ids": list(choice.token_ids),
                                                  "finish_reason": choice.finish_reason}


def build_eval_sampling_api(*, sampler: EvalSampler, endpoint: EvalEndpoint, max_request_bytes: int) -> APIRouter:
    router = APIRouter()

    @router.post(ROUTE, include_in_schema=False)
    async def eval_samples(request: Request):
        sent = request.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(sent.encode(), endpoint.token.encode()):
            raise ApiError("Only the alignment round this app started may sample evaluation answers.",
                           status=401, kind="authentication_error")
        body = parse_body(EvalSamplesBody, await read_json(request, max_request_bytes))
        return await sampler.sample(body)

    return router
