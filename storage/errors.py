"""Typed errors raised by the storage layer.

Every message is a full sentence a user can read, because the serving layer turns these
errors straight into JSON 4xx answers.
"""


class StoreError(ValueError):
    """Base class: the request was refused and nothing was written."""


class NotFound(StoreError):
    """An id does not exist, or belongs to another user (the two are indistinguishable on purpose)."""


class InvalidInput(StoreError):
    """A value is out of range, malformed, or inconsistent with the rows it refers to."""


class Conflict(StoreError):
    """The request is valid but clashes with the current state (a round is already running)."""
