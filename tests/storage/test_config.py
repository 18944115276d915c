from dataclasses import fields
from pathlib import Path

from storage import StorageConfig, db_path


def test_every_field_has_help():
    assert [f.name for f in fields(StorageConfig) if not f.metadata.get("help")] == []


def test_db_path_is_chat_db_in_data_dir():
    assert db_path("some/dir") == Path("some/dir/chat.db")
