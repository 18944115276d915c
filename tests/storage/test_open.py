from concurrent.futures import ThreadPoolExecutor

from storage import FeedbackStore


def test_open_creates_a_wal_database_shared_by_threads(tmp_path):
    data_dir = tmp_path / "data"
    store = FeedbackStore.open(data_dir)
    assert store.db.journal_mode == "wal"
    conversation_id = store.create_conversation(user="alice")

    def say(i):
        return store.record_message(conversation_id=conversation_id, user="alice", role="user", content=f"msg {i}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(say, range(40)))
    store.close()

    reopened = FeedbackStore.open(data_dir)
    assert sorted(ids) == list(range(1, 41))
    assert reopened.stats()["messages"] == 40
    assert len(reopened.conversation(conversation_id, user="alice").messages) == 40
