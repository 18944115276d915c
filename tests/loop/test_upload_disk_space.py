"""An upload the disk cannot hold (with room left for the database) is refused with 507 before it is
written, by its Content-Length; nothing is registered and nothing is left in adapters/."""

import shutil
from collections import namedtuple

from tests.loop.test_worker_upload_checks import round_tar, upload

Usage = namedtuple("Usage", "total used free")


def test_an_upload_larger_than_the_free_space_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 << 30, 9 << 30, (1 << 30) + 1000))
    response, finished, adapters, files = upload(tmp_path, round_tar())

    assert response.status_code == 507
    assert response.json()["error"]["message"].startswith("The server has 1024 MiB of disk space free")
    assert finished.status == "running" and adapters == [] and files == []
