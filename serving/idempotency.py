"""Idempotent API writes: a client that retries a POST after a timeout sends the same
`Idempotency-Key` header, and the retry gets the original response instead of a second row.

The key is saved in the same transaction as the row the request wrote, so a crash keeps both or
neither: a retry after a crash either replays the saved response or writes the row for the
first time. Keys belong to one user and are kept for --idempotency-days (a few hundred bytes
each); the round supervisor's tick forgets older ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from storage.errors import Conflict, InvalidInput
from storage.store import FeedbackStore

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"  # "true" on a response answered from a saved one
MAX_KEY_CHARS = 255  # a UUID is 36; room for a client's own prefix, far below a row's worth


def idempotency_key(request: Request) -> str | None:
    """The request's Idempotency-Key (None without one); a malformed key is refused."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not key.strip() or len(key) > MAX_KEY_CHARS or not key.isascii() or not key.isprintable():
        raise InvalidInput(f"An {HEADER} must be 1 to {MAX_KEY_CHARS} printable ASCII characters.")
    return key


def fingerprint(request: Request, body: BaseModel) -> str:
    """What the request asks for: method, path and the validated body, independent of key order
    and whitespace, so a faithful retry matches and a different request under the same key does not."""
    canonical = orjson.dumps(body.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(f"{request.method} {request.url.path}\n".encode() + canonical).hexdigest()


def respond_once(*, store: FeedbackStore, request: Request, user: str, body: BaseModel,
                 write: Callable[[], dict[str, Any]], status: int = 201) -> JSONResponse:
    """Run `write` (which stores the request's rows and returns the response body) at most once per
    (user, Idempotency-Key); a retry gets the first response, with the same status and ids."""
    key = idempotency_key(request)
    if key is None:
        return JSONResponse(write(), status_code=status)
    wanted = fingerprint(request, body)
    with store.transaction():
        saved = store.idempotency.saved_response(user=user, key=key)
        if saved is None:
            result = write()  # a refusal raises here and leaves neither the row nor the key
            store.idempotency.save_response(user=user, key=key, fingerprint=wanted, status=status, body=result)
            return JSONResponse(result, status_code=status)
    if saved.fingerprint != wanted:
        raise Conflict(f"This {HEADER} was already used for a different request; send a new key with a new "
                       "request.")
    return JSONResponse(saved.body, status_code=saved.status, headers={REPLAYED_HEADER: "true"})
