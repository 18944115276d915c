"""Validation of values before they are written: each check raises InvalidInput with a sentence a
user can read. Shared by every owner of a table (storage.store, storage.adapters, storage.rounds,
storage.idempotency)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from .errors import InvalidInput


def is_int(value: object) -> bool:
    # bool is an int subclass, but True is not a rating or a count.
    return isinstance(value, int) and not isinstance(value, bool)


def check_user(user: object) -> None:
    if not isinstance(user, str) or not user.strip():
        raise InvalidInput("A user name is required.")


def check_name(value: object, what: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} is required.")


def check_choice(value: object, allowed: Sequence[str], what: str) -> None:
    if value not in allowed:
        raise InvalidInput(f"{what} must be one of {', '.join(allowed)}; got {value!r}.")


def check_text(text: object, limit: int, what: str) -> None:
    if not isinstance(text, str):
        raise InvalidInput(f"{what} must be text.")
    if len(text) > limit:
        raise InvalidInput(f"{what} can be at most {limit:,} characters; got {len(text):,}.")


def check_not_blank(text: str, what: str) -> None:
    if not text.strip():
        raise InvalidInput(f"{what} cannot be empty.")


def json_object(value: object, what: str) -> str:
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object.")
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        raise InvalidInput(f"{what} must contain only JSON values.") from None
