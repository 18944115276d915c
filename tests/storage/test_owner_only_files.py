"""The data directory and the database (with its -wal and -shm files) are owner-only, whatever
the umask: other accounts on the machine must not read users' conversations."""

import os
import stat

import pytest

from storage import FeedbackStore
from storage.permissions import owner_only_umask


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def loose_umask():
    """The usual 022: what a file gets when nothing restricts it explicitly."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def test_a_new_data_dir_and_database_are_owner_only(tmp_path, loose_umask):
    data_dir = tmp_path / "srv" / "data"
    with FeedbackStore.open(data_dir) as store:
        store.create_conversation(user="alice")  # a write, so the -wal and -shm files exist
        modes = {p.name: mode(p) for p in data_dir.iterdir()}
    assert mode(tmp_path / "srv") == mode(data_dir) == 0o700
    assert modes == {"chat.db": 0o600, "chat.db-wal": 0o600, "chat.db-shm": 0o600}


def test_an_existing_database_open_to_others_is_tightened(tmp_path, loose_umask):
    with FeedbackStore.open(tmp_path) as store:
        store.create_conversation(user="alice")
    os.chmod(tmp_path / "chat.db", 0o644)

    with FeedbackStore.open(tmp_path) as store:
        store.create_conversation(user="alice")
        assert mode(tmp_path / "chat.db") == mode(tmp_path / "chat.db-wal") == 0o600


def test_a_shared_data_dir_is_named_in_a_warning(tmp_path, loose_umask, caplog):
    os.chmod(tmp_path, 0o755)
    FeedbackStore.open(tmp_path).close()
    assert f"{tmp_path} is accessible to other users (mode 755)" in caplog.text


def test_the_entry_points_umask_makes_every_new_file_owner_only(tmp_path, loose_umask):
    owner_only_umask()
    (tmp_path / "weights.bin").write_bytes(b"x")  # as torch or PEFT would write an adapter file
    (tmp_path / "sub").mkdir()
    assert (mode(tmp_path / "weights.bin"), mode(tmp_path / "sub")) == (0o600, 0o700)
