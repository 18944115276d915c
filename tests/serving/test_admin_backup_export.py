"""POST /api/admin/backup and GET /api/admin/export are for admins only: a backup lands in
DATA_DIR/backups/ (owner-only, a sound database), the export returns the training datasets, and
an export too large for one answer is refused with a sentence."""

import os
import sqlite3
import stat

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serving import data_api
from serving.api import Auth, install_error_handlers
from storage.store import FeedbackStore

USERS = {"alice": "a-pw", "bob": "b-pw"}


@pytest.fixture
def store(tmp_path):
    with FeedbackStore.open(tmp_path) as store:
        cid = store.create_conversation(user="alice")
        prompt = store.record_message(conversation_id=cid, user="alice", role="user", content="Hi")
        good, bad = (store.record_message(conversation_id=cid, user="alice", role="assistant", content=text,
                                          parent_id=prompt, model="qwen") for text in ("Hello!", "Go away."))
        store.record_ranking(user="alice", response_ids=[good, bad])
        yield store


@pytest.fixture
def as_user(store, tmp_path):
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(data_api.build_data_api(store=store, auth=Auth(USERS, admins={"alice"}), data_dir=tmp_path))

    def client(user):
        c = TestClient(app)
        c.auth = (user, USERS[user])
        return c

    return client


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_an_admin_backup_is_a_sound_owner_only_copy(as_user, tmp_path):
    r = as_user("alice").post("/api/admin/backup")
    assert r.status_code == 201
    copy = tmp_path / "backups" / os.path.basename(r.json()["out"])
    assert r.json()["out"] == str(copy) and copy.name.endswith("Z.db")
    assert (mode(tmp_path / "backups"), mode(copy)) == (0o700, 0o600)
    with sqlite3.connect(copy) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM rankings").fetchone()[0] == 1


def test_the_export_returns_the_datasets(as_user):
    r = as_user("alice").get("/api/admin/export")
    assert r.status_code == 200
    assert {name: len(rows) for name, rows in r.json().items()} == {"pairs": 1, "prompts": 1, "sft": 0, "kto": 0}
    assert r.json()["pairs"][0]["chosen"] == [{"role": "assistant", "content": "Hello!"}]


def test_users_are_refused(as_user, tmp_path):
    for r in (as_user("bob").post("/api/admin/backup"), as_user("bob").get("/api/admin/export")):
        assert (r.status_code, r.json()["error"]["message"]) == (403, "Only admins may do this.")
    assert not (tmp_path / "backups").exists()


def test_a_large_export_is_refused_with_the_command_to_use(as_user, monkeypatch, tmp_path):
    monkeypatch.setattr(data_api, "MAX_EXPORT_ROWS", 1)
    r = as_user("alice").get("/api/admin/export")
    assert r.status_code == 400
    assert r.json()["error"]["message"] == (
        f"The export would have up to 2 rows, more than the 1 this endpoint returns; run `python -m storage "
        f"export --data-dir {tmp_path} --out DIR` on the server instead.")


def test_a_large_export_is_refused_before_it_is_built(as_user, monkeypatch):
    monkeypatch.setattr(data_api, "MAX_EXPORT_ROWS", 1)
    monkeypatch.setattr(data_api, "export_datasets", lambda store: pytest.fail("the export was built"))
    assert as_user("alice").get("/api/admin/export").status_code == 400
