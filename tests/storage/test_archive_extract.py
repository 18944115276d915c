"""storage.archive.extract_tar unpacks what tar writers produce (ustar, GNU and pax headers) into a
new owner-only folder, and refuses links, oversized headers and damaged archives on its own, before
reading what they announce: the allow-list of names is a second line, not the only one."""

import io
import os
import stat
import subprocess
import tarfile

import pytest

from storage.archive import ArchiveRefused, allow_names, extract_tar
from tests.storage.unsafe_tars import GIB, bare_header, cve_2025_4517, member, tar_of

ROUND = allow_names(files=("metrics.json",), folders=("sft",))


def any_name(name: str) -> bool:
    return True


def a_round(tmp_path):
    src = tmp_path / "src"
    (src / "sft").mkdir(parents=True)
    (src / "metrics.json").write_text("{}")
    (src / "sft" / "adapter_model.safetensors").write_bytes(b"w" * 3000)
    return src


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_what_tarfile_writes_unpacks_whole_and_owner_only(tmp_path, fmt):
    src, archive = a_round(tmp_path), io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w", format=fmt) as tar:
        for name in ("metrics.json", "sft"):
            tar.add(src / name, arcname=name)
    archive.seek(0)

    names = extract_tar(archive, tmp_path / "out", allowed=ROUND, max_bytes=10_000)

    out = tmp_path / "out"
    assert names == ["metrics.json", "sft", "sft/adapter_model.safetensors"]
    assert (out / "sft" / "adapter_model.safetensors").read_bytes() == b"w" * 3000
    assert [stat.S_IMODE(os.stat(p).st_mode) for p in (out, out / "sft", out / "metrics.json")] == \
        [0o700, 0o700, 0o600]


def test_what_gnu_tar_writes_unpacks(tmp_path):
    src = a_round(tmp_path)
    subprocess.run(["tar", "-cf", tmp_path / "round.tar", "metrics.json", "sft"], cwd=src, check=True)
    assert extract_tar(tmp_path / "round.tar", tmp_path / "out", allowed=ROUND, max_bytes=10_000) == \
        ["metrics.json", "sft", "sft/adapter_model.safetensors"]


def test_the_cve_2025_4517_chain_is_refused_even_where_every_name_is_allowed(tmp_path):
    target = tmp_path / "outside" / "chat.db"
    target.parent.mkdir()
    target.write_text("data")
    archive = cve_2025_4517(target, dest=tmp_path / "out")

    with pytest.raises(ArchiveRefused, match="is a symbolic link; only regular files and folders"):
        extract_tar(io.BytesIO(archive), tmp_path / "out", allowed=any_name, max_bytes=GIB)
    assert target.read_text() == "data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside"]  # out_dir removed


class CountingStream(io.RawIOBase):
    """A header, then as many bytes as anyone asks for; counts what was read."""

    def __init__(self, header: bytes):
        self.header, self.read_bytes = header, 0

    def read(self, n=-1):
        chunk = self.header[self.read_bytes:self.read_bytes + n] or b"\0" * n
        self.read_bytes += len(chunk)
        return chunk


@pytest.mark.parametrize("kind, reason", [(tarfile.XHDTYPE, "extended \\(pax\\) header of"),
                                          (tarfile.GNUTYPE_LONGNAME, "is a GNU long name")])
def test_a_huge_header_record_is_refused_before_it_is_read(tmp_path, kind, reason):
    stream = CountingStream(bare_header("././@LongLink", kind, GIB))
    with pytest.raises(ArchiveRefused, match=reason):
        extract_tar(stream, tmp_path / "out", allowed=any_name, max_bytes=GIB)
    assert stream.read_bytes == 512


def test_a_truncated_archive_is_refused_and_leaves_nothing(tmp_path):
    archive = tar_of(member("metrics.json", data=b"x" * 2000))[:1024]
    with pytest.raises(ArchiveRefused, match="truncated"):
        extract_tar(io.BytesIO(archive), tmp_path / "out", allowed=ROUND, max_bytes=GIB)
    assert not (tmp_path / "out").exists()
