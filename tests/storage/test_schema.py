import sqlite3

import pytest

from storage import FeedbackStore


def test_foreign_keys_are_enforced(fresh_db):
    FeedbackStore(fresh_db)
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY constraint failed"):
        fresh_db["votes"].insert({"response_id": 99, "user": "alice", "rating": 1, "created_at": "2025-01-01"})


def test_foreign_keys_are_indexed(fresh_db):
    FeedbackStore(fresh_db)
    indexed = {(table, tuple(index.columns)) for table in fresh_db.table_names() for index in fresh_db[table].indexes}
    assert {
        ("messages", ("conversation_id",)),
        ("messages", ("parent_id",)),
        ("votes", ("response_id",)),
        ("rankings", ("prompt_id",)),
        ("ranking_items", ("response_id",)),
        ("demonstrations", ("response_id",)),
    } <= indexed
