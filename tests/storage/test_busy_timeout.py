"""A write that reads first (a vote checks its answer) waits for a lock another process holds,
up to busy_timeout_s, instead of failing at once; past the timeout it fails and writes nothing."""

import sqlite3
import threading

import pytest

from storage import FeedbackStore, StorageConfig, db_path


def open_store(tmp_path, busy_timeout_s):
    return FeedbackStore.open(tmp_path, config=StorageConfig(data_dir=str(tmp_path), busy_timeout_s=busy_timeout_s))


def answer(store) -> int:
    cid = store.create_conversation(user="alice")
    prompt = store.record_message(conversation_id=cid, user="alice", role="user", content="Hi")
    return store.record_message(conversation_id=cid, user="alice", role="assistant", content="Hello",
                                model="SmolLM2-135M-Instruct", parent_id=prompt)


def hold_write_lock(tmp_path) -> sqlite3.Connection:
    other = sqlite3.connect(db_path(tmp_path), isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # as an import or a round writing
    return other


def test_a_vote_waits_for_a_lock_held_elsewhere(tmp_path):
    with open_store(tmp_path, busy_timeout_s=10.0) as store:
        response_id = answer(store)
        other = hold_write_lock(tmp_path)
        threading.Timer(0.5, other.commit).start()

        store.record_vote(response_id=response_id, user="alice", rating=1)
        other.close()
        assert store.stats()["votes"] == 1


def test_past_the_busy_timeout_the_vote_fails_and_writes_nothing(tmp_path):
    with open_store(tmp_path, busy_timeout_s=0.2) as store:
        response_id = answer(store)
        other = hold_write_lock(tmp_path)
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            store.record_vote(response_id=response_id, user="alice", rating=1)
        other.close()
        assert store.stats()["votes"] == 0
