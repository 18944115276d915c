"""Typed errors raised by the storage layer.

Every message is a full sentence a user can read, because the serving layer turns these
errors straight into JSON 4xx answers.
"""

import sqlite3


class StoreError(ValueError):
    """Base class: the request was refused and nothing was written."""


class NotFound(StoreError):
    """An id does not exist, or belongs to another user (the two are indistinguishable on purpose)."""


class InvalidInput(StoreError):
    """A value is out of range, malformed, or inconsistent with the rows it refers to."""


class Conflict(StoreError):
    """The request is valid but clashes with the current state (a round is already running)."""


class IncompleteAdapter(StoreError):
    """An adapter version's folder lacks a file vLLM needs to load it (storage.adapters.ADAPTER_FILES)."""


# What a client is told when SQLite itself fails (locked past the busy timeout, disk full, I/O error):
# nothing is wrong with the request, so trying it again later may well succeed.
DATABASE_UNAVAILABLE = "The database is busy or unavailable; try again in a moment."


def is_database_fault(error: BaseException) -> bool:
    """Whether `error` is SQLite failing rather than a request we refuse. Constraint errors
    (IntegrityError) are excluded: our validation should have caught them, so they are bugs, and a
    retry would fail the same way."""
    return isinstance(error, sqlite3.DatabaseError) and not isinstance(error, sqlite3.IntegrityError)
