import pytest

from storage import FeedbackStore, StoreError
from storage.schema import SCHEMA_VERSION, migrate, schema_version

T = "2024-06-01T12:00:00.000+00:00"


def build_v1_database(db):
    migrate(db, target=1)
    db["conversations"].insert(
        {"id": 1, "user": "alice", "title": "Old", "created_at": T, "updated_at": T, "source": "chat"}
    )
    db["messages"].insert_all(
        [
            {"id": 1, "conversation_id": 1, "parent_id": None, "user": "alice", "role": "user", "content": "Hi",
             "created_at": T},
            {"id": 2, "conversation_id": 1, "parent_id": 1, "user": "alice", "role": "assistant", "content": "Hello",
             "model": "qwen", "latency_ms": 50.0, "finish_reason": "stop", "created_at": T},
        ]
    )
    db["votes"].insert({"id": 1, "response_id": 2, "user": "alice", "rating": 1, "created_at": T})
    db["adapters"].insert({"version": 1, "path": "adapters/1", "status": "active", "base_model": "qwen",
                           "metrics": "{}", "data": "{}", "created_at": T, "activated_at": T})


def test_a_v1_database_is_upgraded_and_keeps_every_row(fresh_db):
    build_v1_database(fresh_db)
    assert "status" not in fresh_db["messages"].columns_dict

    store = FeedbackStore(fresh_db)

    assert schema_version(fresh_db) == SCHEMA_VERSION == 4
    assert fresh_db["idempotency_keys"].count == 0
    assert store.stats() == {
        "conversations": 1, "messages": 2, "votes": 1, "rankings": 0, "demonstrations": 0, "adapters": 1,
        "rounds": 0,
    }
    answer = store.message(2)
    assert (answer.content, answer.latency_ms, answer.ttft_ms, answer.status) == ("Hello", 50.0, None, "complete")
    assert store.registry.active_adapter().error is None
    assert (store.registry.active_adapter().round_id, store.registry.active_adapter().decision) == (None, None)
    assert [m.content for m in store.thread(1, user="alice")] == ["Hi", "Hello"]


def test_opening_an_up_to_date_database_changes_nothing(fresh_db, dump):
    FeedbackStore(fresh_db)
    before = dump()
    FeedbackStore(fresh_db)
    assert dump() == before


def test_a_database_from_newer_code_is_refused(fresh_db):
    FeedbackStore(fresh_db)
    fresh_db["meta"].update("schema_version", {"value": "99"})
    with pytest.raises(StoreError, match="^The database is at schema version 99, newer than this code understands"):
        FeedbackStore(fresh_db)
