from datetime import datetime, timedelta, timezone

import pytest
from sqlite_utils import Database

from storage import FeedbackStore

START = datetime(2025, 1, 1, tzinfo=timezone.utc)


class TickingClock:
    """A clock that moves one second per reading, so every timestamp is distinct and predictable."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def fresh_db():
    return Database(memory=True)


@pytest.fixture
def store(fresh_db):
    return FeedbackStore(fresh_db, clock=TickingClock())


@pytest.fixture
def ask(store):
    """ask(prompt, answers) -> (prompt_id, answer_ids): a new conversation with one prompt and its answers."""

    def ask(prompt="What is 2+2?", answers=("4",), *, user="alice", system=None):
        conversation_id = store.create_conversation(user=user)
        parent_id = None
        if system is not None:
            parent_id = store.record_message(
                conversation_id=conversation_id, user=user, role="system", content=system
            )
        prompt_id = store.record_message(
            conversation_id=conversation_id, user=user, role="user", content=prompt, parent_id=parent_id
        )
        answer_ids = [
            store.record_message(
                conversation_id=conversation_id, user=user, role="assistant", content=answer, parent_id=prompt_id,
                model="qwen",  # the model produced it: only such answers take feedback
            )
            for answer in answers
        ]
        return prompt_id, answer_ids

    return ask


@pytest.fixture
def dump(fresh_db):
    """dump() -> every row and schema statement, to show that a refused write changed nothing."""
    return lambda: list(fresh_db.iterdump())
