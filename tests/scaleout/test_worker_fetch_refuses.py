"""The worker unpacks the app's adapter with storage.archive too: only the adapter's own files, so a
tar that links or climbs out of the worker's folder (a compromised or impersonated app) is refused."""

import tarfile

import httpx
import pytest

from align.worker import WorkerError, fetch_adapter
from tests.storage.unsafe_tars import member, tar_of


def app_sending(archive: bytes) -> httpx.Client:
    return httpx.Client(base_url="http://app", transport=httpx.MockTransport(
        lambda request: httpx.Response(200, content=archive, headers={"Content-Type": "application/x-tar"})))


def test_the_adapter_files_are_unpacked(tmp_path):
    archive = tar_of(member("adapter_config.json", data=b"{}"), member("adapter_model.safetensors", data=b"w"))
    active = fetch_adapter(app_sending(archive), 3, tmp_path / "active")
    assert (active.version, sorted(p.name for p in (tmp_path / "active").iterdir())) == \
        (3, ["adapter_config.json", "adapter_model.safetensors"])
    assert [p.name for p in tmp_path.iterdir()] == ["active"]  # the downloaded tar is gone


@pytest.mark.parametrize("archive, reason", [
    (tar_of(member("adapter_model.safetensors", kind=tarfile.SYMTYPE, linkname="/etc/passwd")), "symbolic link"),
    (tar_of(member("../escaped", data=b"x")), "not a plain relative path"),
    (tar_of(member("metrics.json", data=b"{}")), "not one of the files accepted here"),
])
def test_a_tar_with_anything_else_is_refused(tmp_path, archive, reason):
    (tmp_path / "work").mkdir()
    with pytest.raises(WorkerError, match=f"The app's adapter v3 was refused: .*{reason}"):
        fetch_adapter(app_sending(archive), 3, tmp_path / "work" / "active")
    assert [p.name for p in tmp_path.iterdir()] == ["work"] and list((tmp_path / "work").iterdir()) == []
