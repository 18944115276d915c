"""An upload whose tar could write outside its folder, or cost more than its size says, is refused
with 400 before anything is written outside the upload's folder; the round is marked failed and
nothing is registered. The archive is read by storage.archive, not by tarfile's extraction filters
(CVE-2025-4517 gets past the 'data' filter on the Python we run)."""

import gzip
import tarfile

import pytest

from tests.loop.test_worker_upload_checks import round_tar, worker_round
from tests.storage.unsafe_tars import GIB, bare_header, cve_2025_4517, member, tar_of

CASES = {
    "symlink": (lambda d: tar_of(member("adapter_model.safetensors", kind=tarfile.SYMTYPE,
                                        linkname=str(d / "chat.db"))), "is a symbolic link"),
    "hard link": (lambda d: tar_of(member("metrics.json", kind=tarfile.LNKTYPE, linkname="../../chat.db")),
                  "is a hard link"),
    "dot-dot": (lambda d: tar_of(member("../../../escaped", data=b"x")), "not a plain relative path"),
    "absolute": (lambda d: tar_of(member(str(d / "escaped"), data=b"x")), "absolute path"),
    "not a round file": (lambda d: tar_of(member("sitecustomize.py", data=b"import os")),
                         "'sitecustomize.py', which is not one of the files accepted here"),
    "nested folder": (lambda d: tar_of(member("sft/deeper/x.json", data=b"{}")), "not one of the files accepted"),
    "gzip": (lambda d: gzip.compress(round_tar()), "compressed (gzip)"),
    "huge pax header": (lambda d: bare_header("././@PaxHeader", tarfile.XHDTYPE, GIB),
                        "extended (pax) header of 1073741824 bytes"),
    "huge GNU long name": (lambda d: bare_header("././@LongLink", tarfile.GNUTYPE_LONGNAME, GIB),
                           "is a GNU long name"),
    "too many members": (lambda d: tar_of(*[member(f"sft/f{i}.json", data=b"{}") for i in range(65)]),
                         "more than 64 entries"),
    "member over the cap": (lambda d: bare_header("adapter_model.safetensors", tarfile.REGTYPE, 5 * GIB),
                            "expands to more than 4096 MiB"),
    "duplicate name": (lambda d: tar_of(member("metrics.json", data=b"{}"), member("metrics.json", data=b"{}")),
                       "'metrics.json' twice"),
    # unpacked into DATA_DIR/adapters/.upload-*/candidate: the chain climbs out of that, to chat.db
    "CVE-2025-4517": (lambda d: cve_2025_4517(d / "chat.db", dest=d / "adapters" / ".upload-x" / "candidate"),
                      "not one of the files accepted here"),
}


@pytest.mark.parametrize("case", CASES)
def test_unsafe_archive_is_refused_and_writes_nothing_outside(tmp_path, case):
    data_dir = tmp_path / "data"
    store, client, upload_path, round_id = worker_round(data_dir)
    build, reason = CASES[case]

    response = client.post(upload_path, content=build(data_dir))

    assert response.status_code == 400 and reason in response.json()["error"]["message"]
    assert b"overwritten" not in (data_dir / "chat.db").read_bytes()
    assert store.round_lock.round(round_id).status == "failed" and store.registry.adapters() == []
    assert [p.name for p in tmp_path.iterdir()] == ["data"]
    assert {p.name for p in data_dir.iterdir()} <= {"chat.db", "chat.db-wal", "chat.db-shm", "adapters"}
    assert list((data_dir / "adapters").iterdir()) == []
