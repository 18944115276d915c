"""HTTP API: OpenAI-compatible chat completions plus the feedback endpoints.

Routes: POST /v1/chat/completions, GET /v1/models, POST /api/feedback, POST /api/rankings,
POST /api/demonstrations, GET /api/conversations, GET /api/conversations/{id}, GET /healthz;
admins only: GET /api/adapters, POST /api/adapters/{version|base}/activate, POST /api/align/run,
GET /api/align/rounds, GET /api/align/rounds/{id}.
Callers are named by HTTP Basic or a Bearer API key (`Auth`); chat completions also pass the
user's rate limit (429 with Retry-After). vLLM's runtime LoRA routes are deliberately absent.
The feedback routes write through serving.feedback.FeedbackService, the one the UI uses, each
once per Idempotency-Key (serving.idempotency).
Every refusal is a JSON 4xx `{"error": {"message", "type", "code"}}` and writes nothing; a database
that is locked or failing is a 503 in the same shape, with Retry-After. Store calls run in worker
threads, so a lock held elsewhere (an import, a round) stalls only the requests that need the database.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import sqlite3
from dataclasses import asdict
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.chat import ChatError, ChatService, StreamEvent
from serving.feedback import API_SOURCE, FeedbackService
from serving.idempotency import respond_once
from serving.keys import KeyRing
from serving.limits import RateLimited, RateLimiter
from serving.logins import Logins, client_address
from storage.errors import DATABASE_UNAVAILABLE, Conflict, NotFound, StoreError, is_database_fault
from storage.store import FeedbackStore

log = logging.getLogger(__name__)

DATABASE_RETRY_AFTER_S = 5  # about one busy timeout: long enough for an import's or a round's write to end
LOCAL_API_USER = "local"  # without --auth, API clients act as one local user
MAX_ROW_ID = 2**63 - 1  # SQLite's largest INTEGER: a bigger id would overflow the driver (a 500), not miss
RowId = Annotated[StrictInt, Field(ge=1, le=MAX_ROW_ID)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FeedbackBody(_Body):
    response_id: RowId
    rating: Literal[1, -1]
    reason: StrictStr | None = None
    comment: StrictStr | None = None


class RankingBody(_Body):
    response_ids: list[RowId]


class DemonstrationBody(_Body):
    response_id: RowId
    content: StrictStr


class ApiError(Exception):
    def __init__(self, message: str, *, status: int = 400, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.message, self.status, self.kind = message, status, kind


def error_response(message: str, status: int, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


def _first_validation_error(errors) -> str:
    """Pydantic's error list -> one sentence naming the field."""
    err = errors[0]
    where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",)) or "the body"
    return f"Invalid value for '{where}': {err.get('msg', 'invalid')}."


class Auth:
    """Who is calling: HTTP Basic against the --auth users (checked and throttled by `logins`), a
    Bearer key from the --api-keys file whose user is one of the --auth users, or the one local user
    without --auth. Admins are the --admin users; without --auth the one local user is the admin."""

    def __init__(self, users: dict[str, str], admins: set[str] | frozenset[str] = frozenset(),
                 keys: KeyRing | None = None, logins: Logins | None = None):
        self.users = users
        self.admins = set(admins)
        self.keys = keys
        self.logins = logins or Logins(users)

    def is_admin(self, user: str) -> bool:
        return not self.users or user in self.admins

    def admin(self, request: Request) -> str:
        user = self.user(request)
        if not self.is_admin(user):
            raise ApiError("Only admins may do this.", status=403, kind="permission_error")
        return user

    def user(self, request: Request) -> str:
        if not self.users:
            return LOCAL_API_USER
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                name, _, password = base64.b64decode(value).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                name, password = "", ""
            if self.logins.check(name, password, client_address(request.scope)):  # LoginLocked: a 429
                return name
        elif scheme.lower() == "bearer" and self.keys is not None:
            name = self.keys.user(value.strip())
            if name is not None and name in self.users:  # a user taken out of --auth loses their keys too
                return name
        accepted = "a user name and password (HTTP Basic auth)" + \
            (" or an API key (Authorization: Bearer)" if self.keys is not None else "")
        raise ApiError(f"This server needs {accepted}.", status=401, kind="authentication_error")


async def read_json(request: Request, max_bytes: int) -> dict:
    length = request.headers.get("content-length")
    if length and length.isascii() and length.isdigit() and int(length) > max_bytes:
        raise ApiError(f"The request body is larger than {max_bytes} bytes.", status=413)
    raw = await _read_capped(request, max_bytes)
    try:
        # orjson, not json: it refuses what the database or the engine would choke on later (lone
        # surrogates, NaN, nesting past 1,024 levels) instead of handing it on.
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError("The request body is not valid JSON.")
    if not isinstance(body, dict):
        raise ApiError("The request body must be a JSON object.")
    return body


async def _read_capped(request: Request, max_bytes: int) -> bytes:
    """The body, read no further than `max_bytes`: a chunked upload without a Content-Length
    is cut off as soon as it is too large, not after it has filled the memory."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(f"The request body is larger than {max_bytes} bytes.", status=413)
        chunks.append(chunk)
    request._body = b"".join(chunks)  # where Starlette caches it: a later request.body() still works
    return request._body


def is_row_id(text: str) -> bool:
    """Whether a URL segment can name a row: ASCII digits ('²'.isdigit() is True too) within SQLite's
    range (checked by length first: int() refuses strings of over 4,300 digits)."""
    return text.isascii() and text.isdigit() and len(text) <= len(str(MAX_ROW_ID)) and int(text) <= MAX_ROW_ID


def json_body(schema: dict) -> dict:
    """OpenAPI for a route that reads its own body (`read_json`): declared, so the docs show it and
    a fuzzer sends it."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def chat_body_schema(sampling) -> dict:
    """The chat request fields this service checks itself; vLLM accepts the rest of OpenAI's."""
    message = {"type": "object", "required": ["role", "content"],
               "properties": {"role": {"enum": ["system", "user", "assistant"]}, "content": {"type": "string"}}}
    return {
        "type": "object", "required": ["messages"],
        "properties": {
            "messages": {"type": "array", "minItems": 1, "items": message},
            "model": {"type": "string", "description": "The served model name or 'default'."},
            "n": {"type": "integer", "minimum": 1, "maximum": sampling.max_n},
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": sampling.max_tokens_limit},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "seed": {"type": "integer"},
            "stream": {"type": "boolean"},
        },
    }


def parse_chat_request(request_cls: type[BaseModel], body: dict):
    """vLLM's ChatCompletionRequest from a JSON object. Its `mode="before"` validators read the raw
    body and raise TypeError or AttributeError on odd shapes (`"messages": 1623` iterates an int),
    which pydantic passes through as they are: each is a refusal with a sentence, never a 500."""
    if not isinstance(body.get("messages"), list):
        raise ApiError("Invalid value for 'messages': it must be a list of messages.")
    try:
        return request_cls.model_validate(body)
    except ValidationError as e:
        raise ApiError(_first_validation_error(e.errors()))
    except (TypeError, AttributeError, KeyError, IndexError) as e:
        raise ApiError(f"The request is not a valid chat request ({type(e).__name__}: {e}).")


def parse_body(model: type[BaseModel], body: dict):
    try:
        return model.model_validate(body)
    except ValidationError as e:
        raise ApiError(_first_validation_error(e.errors()))


def build_api(*, chat: ChatService, store: FeedbackStore, feedback: FeedbackService, auth: Auth,
              max_request_bytes: int, limiter: RateLimiter | None = None) -> APIRouter:
    router = APIRouter()
    limiter = limiter or RateLimiter(None)

    @router.get("/healthz")
    async def healthz():
        active = chat.engine.active
        return {"status": "ok", "model": chat.engine.served_name, "adapter_version": active.adapter_version}

    @router.get("/v1/models")
    async def models(request: Request):
        auth.user(request)
        return (await chat.engine.models()).model_dump(mode="json")

    @router.post("/v1/chat/completions", openapi_extra=json_body(chat_body_schema(chat.sampling)))
    async def chat_completions(request: Request):
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

        user = auth.user(request)
        body = await read_json(request, max_request_bytes)
        req = parse_chat_request(ChatCompletionRequest, body)
        limiter.admit(user)  # after the checks above: a mistyped request costs no budget
        if not req.stream:
            return JSONResponse(await chat.complete(req, user=user))
        chunks = chat.stream(req, user=user)
        first = await anext(chunks)  # refusals surface here, before the 200 status goes out
        return StreamingResponse(_sse(first, chunks), media_type="text/event-stream")

    # Named "feedback" as before (the OpenAPI operation id and summary), not after the service it calls.
    @router.post("/api/feedback", name="feedback", status_code=201,
                 openapi_extra=json_body(FeedbackBody.model_json_schema()))
    async def post_feedback(request: Request):
        user = auth.user(request)
        b = parse_body(FeedbackBody, await read_json(request, max_request_bytes))

        def write():
            vote_id = feedback.vote(b.response_id, b.rating, user=user, reason=b.reason, comment=b.comment)
            return {"id": vote_id, "response_id": b.response_id, "rating": b.rating}

        return await asyncio.to_thread(respond_once, store=store, request=request, user=user, body=b, write=write)

    @router.post("/api/rankings", status_code=201, openapi_extra=json_body(RankingBody.model_json_schema()))
    async def rankings(request: Request):
        user = auth.user(request)
        b = parse_body(RankingBody, await read_json(request, max_request_bytes))

        def write():
            ranking_id = feedback.rank(b.response_ids, user=user, source=API_SOURCE)
            return {"id": ranking_id, "response_ids": b.response_ids}

        return await asyncio.to_thread(respond_once, store=store, request=request, user=user, body=b, write=write)

    @router.post("/api/demonstrations", status_code=201,
                 openapi_extra=json_body(DemonstrationBody.model_json_schema()))
    async def demonstrations(request: Request):
        user = auth.user(request)
        b = parse_body(DemonstrationBody, await read_json(request, max_request_bytes))

        def write():
            demo_id = feedback.rewrite(b.response_id, b.content, user=user)
            return {"id": demo_id, "response_id": b.response_id}

        return await asyncio.to_thread(respond_once, store=store, request=request, user=user, body=b, write=write)

    @router.get("/api/conversations")
    async def conversations(request: Request):
        user = auth.user(request)
        return {"data": [asdict(c) for c in await asyncio.to_thread(store.conversations, user=user)]}

    @router.get("/api/conversations/{conversation_id}")
    async def conversation(conversation_id: str, request: Request):
        user = auth.user(request)
        if not is_row_id(conversation_id):
            raise ApiError(f"Conversation {conversation_id} does not exist.", status=404, kind="not_found")
        return asdict(await asyncio.to_thread(store.conversation, int(conversation_id), user=user))

    return router


def build_admin_api(*, store: FeedbackStore, adapters, supervisor, auth: Auth) -> APIRouter:
    """The loop's controls: adapters (list, promote, roll back) and alignment rounds (run, list)."""
    from serving.adapters import AdapterError

    router = APIRouter()

    @router.get("/api/adapters")
    async def list_adapters(request: Request):
        auth.admin(request)
        return {"active": adapters.engine.active.adapter_version,
                "data": [asdict(a) for a in reversed(await asyncio.to_thread(store.registry.adapters))]}

    @router.post("/api/adapters/{version}/activate")
    async def activate(version: str, request: Request):
        user = auth.admin(request)
        if version != "base" and not is_row_id(version):
            raise ApiError(f"Adapter version {version} does not exist; use a version number or 'base'.",
                           status=404, kind="not_found")
        try:
            active = await adapters.activate(None if version == "base" else int(version), by=user)
        except AdapterError as e:
            raise ApiError(e.message, status=e.status, kind="conflict")
        return {"active": active.adapter_version,
                "model": adapters.engine.served_name if active.adapter_version is None else active.name}

    @router.post("/api/align/run", status_code=202)
    async def run_round(request: Request):
        user = auth.admin(request)
        return {"round": asdict(supervisor.start_round(trigger="admin", requested_by=user))}

    @router.get("/api/align/rounds")
    async def rounds(request: Request):
        auth.admin(request)
        return {"data": [asdict(r) for r in await asyncio.to_thread(store.round_lock.rounds)],
                "schedule": supervisor.last_due.reason if supervisor.last_due else None}

    @router.get("/api/align/rounds/{round_id}")
    async def round_(round_id: str, request: Request):
        auth.admin(request)
        if not is_row_id(round_id):
            raise ApiError(f"Round {round_id} does not exist.", status=404, kind="not_found")
        return asdict(await asyncio.to_thread(store.round_lock.round, int(round_id)))

    return router


def _sse_event(event: StreamEvent) -> str | bytes:
    if event.sse is not None:
        return event.sse  # unchanged: vLLM's own bytes
    return b"data: " + orjson.dumps(event.chunk) + b"\n\n"


async def _sse(first: StreamEvent, events):
    yield _sse_event(first)
    async for event in events:
        yield _sse_event(event)
    yield "data: [DONE]\n\n"


def install_error_handlers(app: FastAPI) -> None:
    """Every error the API raises becomes the same JSON shape with a sentence a user can read."""

    @app.exception_handler(ApiError)
    async def _api_error(_, e: ApiError):
        return error_response(e.message, e.status, e.kind)

    @app.exception_handler(ChatError)
    async def _chat_error(_, e: ChatError):
        return error_response(e.message, e.status, e.kind)

    @app.exception_handler(RateLimited)
    async def _rate_limited(_, e: RateLimited):
        response = error_response(e.message, e.status, e.kind)
        response.headers["Retry-After"] = str(e.retry_after_s)
        return response

    @app.exception_handler(StoreError)
    async def _store_error(_, e: StoreError):
        status, kind = (404, "not_found") if isinstance(e, NotFound) else \
            (409, "conflict") if isinstance(e, Conflict) else (400, "invalid_request_error")
        return error_response(str(e), status, kind)

    @app.exception_handler(sqlite3.DatabaseError)
    async def _database_error(request: Request, e: sqlite3.DatabaseError):
        if not is_database_fault(e):
            raise e  # a constraint the validation missed: a bug, logged with its traceback as a 500
        log.error("%s %s failed in the database: %s", request.method, request.url.path, e)
        response = error_response(DATABASE_UNAVAILABLE, 503, "service_unavailable")
        response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_, e: RequestValidationError):
        return error_response(_first_validation_error(e.errors()), 400, "invalid_request_error")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_, e: StarletteHTTPException):
        return error_response(str(e.detail), e.status_code, "invalid_request_error")
