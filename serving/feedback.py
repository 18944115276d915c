"""Feedback: what a thumbs up or down, a ranking and a rewrite do, in one place for the HTTP API's
feedback routes (serving.api) and the Gradio UI's thumbs, rewrites and rankings (serving.ui).

Each kind is checked and written by the store (storage.store: the rating, the lengths, that the
answers exist, belong to the user and answer one prompt), so a refusal reads the same from either
door. Feedback is not rate limited: it costs no engine time (see serving.limits). What stays at
each door: the API's Idempotency-Key (serving.idempotency), which wraps these calls in its
transaction; the UI's blank reason or comment, which it sends as None, and the footer it strips
from a rewritten answer before calling `rewrite` (serving.chat_actions.strip_footer).
"""

from __future__ import annotations

from collections.abc import Sequence

from storage.store import FeedbackStore

API_SOURCE = "api"  # rankings sent to POST /api/rankings
UI_SOURCE = "ui"  # rankings made on the Compare tab or through the UI's gr.api


class FeedbackService:
    """Owns the writes of feedback rows: votes, rankings (with their items) and demonstrations.
    Every method returns the id of the row it wrote (for a repeated vote, the id of the latest)."""

    def __init__(self, *, store: FeedbackStore):
        self.store = store

    def vote(self, response_id: int, rating: int, *, user: str, reason: str | None = None,
             comment: str | None = None) -> int:
        """Thumbs up (1) or down (-1) on an answer; the user's latest vote on it is the one that counts."""
        return self.store.record_vote(response_id=response_id, user=user, rating=rating, reason=reason,
                                      comment=comment)

    def rank(self, response_ids: Sequence[int], *, user: str, source: str) -> int:
        """An ordering of answers to one prompt, best first; `source` says which door it came through."""
        return self.store.record_ranking(user=user, response_ids=response_ids, source=source)

    def rewrite(self, response_id: int, content: str, *, user: str) -> int:
        """The user's better version of an answer, stored as a demonstration; the answer stays."""
        return self.store.record_demonstration(response_id=response_id, user=user, content=content)
