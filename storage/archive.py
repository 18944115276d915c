"""Unpacking a tar another machine made, without trusting it: the round a remote trainer uploads
(loop/trainer_api.py) and the adapter the app sends a worker (align/worker.py).

tarfile is not used to read them. Its extraction filters have had bypasses (CVE-2025-4517: a chain
of symlinks past PATH_MAX, then a hard link through them, writes outside the target on the Python
3.11.7 we run), `r:*` inflates compressed archives, and it reads GNU long-name and pax records whole
before any size check. The ustar format is simple enough to read here, one 512-byte block at a
time: every header field is checked before the bytes it announces are read, and only regular files
and folders with allowed names are accepted, each written by us (O_EXCL | O_NOFOLLOW, 0600) into a
folder created for it. Links, devices, sparse files, GNU long names and compressed archives are
refused with a sentence.

Also here: the working folders uploads are unpacked in (`held_folder`), locked while in use, so
that clean-up of abandoned ones (`remove_abandoned`) never deletes one a running upload holds.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import struct
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

BLOCK = 512  # every ustar header and every member's data is padded to whole blocks
CHUNK = 1 << 20  # copy member data a MiB at a time
MAX_HEADER_BYTES = 4096  # a pax record with a path and an mtime is under 100 bytes
COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}
REGULAR, DIRECTORY, PAX = (b"0", b"\0"), b"5", b"x"
OTHER_KINDS = {b"1": "a hard link", b"2": "a symbolic link", b"3": "a character device", b"4": "a block device",
               b"6": "a FIFO", b"7": "a contiguous file", b"g": "a global pax header", b"L": "a GNU long name",
               b"K": "a GNU long link name", b"S": "a sparse file"}
PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")  # what PEFT, torch and tokenizers name files


class ArchiveRefused(ValueError):
    """A tar that is not unpacked; the message says why (and nothing was written outside out_dir)."""


def allow_names(files: Iterable[str], folders: Iterable[str] = ()) -> Callable[[str], bool]:
    """Accept exactly `files` at the top, and `folders` holding plain file names (no deeper folders)."""
    files, folders = frozenset(files), frozenset(folders)

    def allowed(name: str) -> bool:
        parts = name.split("/")
        if len(parts) == 1:
            return name in files or name in folders
        return len(parts) == 2 and parts[0] in folders and bool(PLAIN_NAME.fullmatch(parts[1]))

    return allowed


def extract_tar(source: str | Path | BinaryIO, out_dir: str | Path, *, allowed: Callable[[str], bool],
                max_bytes: int, max_members: int = 64, max_header_bytes: int = MAX_HEADER_BYTES) -> list[str]:
    """Unpack the uncompressed tar `source` (a path or a binary stream) into out_dir, which this
    creates (0700; it must not exist yet). Returns the names written. Raises ArchiveRefused, after
    removing out_dir, for anything but allowed regular files and folders within the limits."""
    out = Path(out_dir)
    os.mkdir(out, 0o700)
    os.chmod(out, 0o700)  # exactly: mkdir's mode is masked by the umask
    try:
        if isinstance(source, (str, Path)):
            with open(source, "rb") as stream:
                return _extract(stream, out, allowed, max_bytes, max_members, max_header_bytes)
        return _extract(source, out, allowed, max_bytes, max_members, max_header_bytes)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise


def _extract(stream: BinaryIO, out: Path, allowed: Callable[[str], bool], max_bytes: int, max_members: int,
             max_header_bytes: int) -> list[str]:
    seen: list[str] = []
    total = 0
    for kind, name, size in _members(stream, max_header_bytes=max_header_bytes):
        if len(seen) == max_members:
            raise ArchiveRefused(f"it has more than {max_members} entries.")
        _check_name(name, allowed, seen)
        seen.append(name)
        if kind == DIRECTORY:
            if size:
                raise ArchiveRefused(f"its folder {name!r} claims {size} bytes of content.")
            _make_dirs(out, name.split("/"))
            continue
        total += size
        if total > max_bytes:
            raise ArchiveRefused(f"it expands to more than {max_bytes >> 20} MiB.")
        _make_dirs(out, name.split("/")[:-1])
        _write_file(stream, out / name, size)
    return seen


def _members(stream: BinaryIO, *, max_header_bytes: int) -> Iterator[tuple[bytes, str, int]]:
    """(kind, name, size) of each member, the stream left at its data; pax records are folded into the
    member they describe. Every size is checked before the bytes it announces are read."""
    pax: dict[str, str] | None = None
    header = _read(stream, BLOCK, first=True)
    while True:
        if header == bytes(BLOCK):  # the end-of-archive marker
            return
        _check_header(header)
        kind, size = header[156:157], _octal(header[124:136], "size")
        if kind == PAX:
            if pax is not None:
                raise ArchiveRefused("it has two pax headers in a row.")
            if size > max_header_bytes:
                raise ArchiveRefused(f"it has an extended (pax) header of {size} bytes; at most "
                                     f"{max_header_bytes} are accepted.")
            pax = _parse_pax(_read(stream, size))
            _read(stream, -size % BLOCK)
            header = _read(stream, BLOCK)
            continue
        name = (pax or {}).get("path") or _ustar_name(header)
        if kind not in REGULAR and kind != DIRECTORY:
            what = OTHER_KINDS.get(kind, f"an entry of type {kind!r}")
            raise ArchiveRefused(f"{name!r} is {what}; only regular files and folders are accepted.")
        if pax and "size" in pax:
            size = _decimal(pax["size"], "pax size")
        pax = None
        yield kind, name.removesuffix("/") if kind == DIRECTORY else name, size
        _read(stream, -size % BLOCK)
        header = _read(stream, BLOCK)


def _check_not_compressed(header: bytes | bytearray) -> None:
    for magic, kind in COMPRESSED.items():
        if header.startswith(magic):
            raise ArchiveRefused(f"it is compressed ({kind}); send an uncompressed tar.")


def _check_header(header: bytes) -> None:
    if header[257:262] != b"ustar":
        raise ArchiveRefused("it is not a ustar or pax tar archive.")
    stored = _octal(header[148:156], "checksum")
    spaces = header[:148] + b" " * 8 + header[156:]  # the checksum counts its own field as spaces
    if stored not in (sum(spaces), sum(struct.unpack(f"{BLOCK}b", spaces))):  # tar writers differ on signedness
        raise ArchiveRefused("a header's checksum is wrong: the archive is damaged.")


def _octal(field: bytes, what: str) -> int:
    digits = field.split(b"\0", 1)[0].strip(b" ")
    if digits and not re.fullmatch(rb"[0-7]+", digits):  # a base-256 number (a GNU extension) too
        raise ArchiveRefused(f"a header's {what} field is not an octal number.")
    return int(digits or b"0", 8)


def _decimal(text: str, what: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ArchiveRefused(f"a header's {what} is not a number.")
    return int(text)


def _ustar_name(header: bytes) -> str:
    """name, behind the prefix field in POSIX ustar (old GNU tar keeps times in those bytes instead)."""
    name = header[:100].split(b"\0", 1)[0]
    prefix = header[345:500].split(b"\0", 1)[0] if header[257:265] == b"ustar\x0000" else b""
    try:
        return (prefix + b"/" + name if prefix else name).decode("utf-8")
    except UnicodeDecodeError:
        raise ArchiveRefused("a name in it is not UTF-8.") from None


def _parse_pax(data: bytes) -> dict[str, str]:
    """'<length> <key>=<value>\\n' records. Only path and size matter (links and sparse maps are
    refused); the times and owners a tar writer adds are ignored."""
    records, pos = {}, 0
    while pos < len(data):
        length_end = data.find(b" ", pos)
        length = data[pos:length_end]
        if length_end < 0 or not length.isdigit() or pos + int(length) > len(data):
            raise ArchiveRefused("a pax header in it is malformed.")
        record, pos = data[length_end + 1:pos + int(length)], pos + int(length)
        key, eq, value = record.removesuffix(b"\n").partition(b"=")
        if not eq:
            raise ArchiveRefused("a pax header in it is malformed.")
        try:
            records[key.decode("utf-8")] = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ArchiveRefused("a pax header in it is not UTF-8.") from None
    if any(key.startswith("GNU.sparse") for key in records):
        raise ArchiveRefused("it holds a sparse file; only regular files and folders are accepted.")
    return records


def _check_name(name: str, allowed: Callable[[str], bool], seen: list[str]) -> None:
    if name.startswith("/"):
        raise ArchiveRefused(f"it names an absolute path ({name!r}).")
    if "\\" in name or any(ord(c) < 32 for c in name):
        raise ArchiveRefused(f"a name in it has a backslash or control character ({name!r}).")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise ArchiveRefused(f"a name in it is not a plain relative path ({name!r}).")
    if not allowed(name):
        raise ArchiveRefused(f"it holds {name!r}, which is not one of the files accepted here.")
    if name in seen:
        raise ArchiveRefused(f"it holds {name!r} twice.")


def _make_dirs(out: Path, parts: list[str]) -> None:
    """Create the member's folders under out (0700). Nothing under out is a link: only this module
    writes there, and it writes no links."""
    path = out
    for part in parts:
        path = path / part
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            if not path.is_dir() or path.is_symlink():
                raise ArchiveRefused(f"it holds both a file and a folder named {part!r}.") from None
        else:
            os.chmod(path, 0o700)


def _write_file(stream: BinaryIO, path: Path, size: int) -> None:
    """Copy exactly `size` bytes into a new file; O_EXCL and O_NOFOLLOW refuse any existing name."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        left = size
        while left:
            chunk = _read(stream, min(CHUNK, left))
            f.write(chunk)
            left -= len(chunk)


def _read(stream: BinaryIO, n: int, *, first: bool = False) -> bytes:
    """Exactly n bytes. The first block is also checked for a compressor's magic number (a small
    compressed archive is shorter than one block)."""
    data = bytearray()
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            break
        data += chunk
    if first:
        _check_not_compressed(data)
    if len(data) < n:
        raise ArchiveRefused("it ends in the middle of an entry: the archive is truncated.")
    return bytes(data)


@contextmanager
def held_folder(parent: str | Path, prefix: str) -> Iterator[Path]:
    """A new folder parent/<prefix><random> (0700), locked (flock) while the block runs and removed
    after it; remove_abandoned(parent, prefix) skips it meanwhile, in this process or another."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    while True:  # remove_abandoned may delete the folder between mkdir and flock: then take another
        folder = parent / f"{prefix}{uuid.uuid4().hex[:12]}"
        os.mkdir(folder, 0o700)
        try:
            os.chmod(folder, 0o700)
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except FileNotFoundError:
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.path.lexists(folder) and os.path.samestat(os.fstat(fd), os.lstat(folder)):
            break
        os.close(fd)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)


def remove_abandoned(parent: str | Path, prefix: str) -> list[Path]:
    """Delete what under parent starts with `prefix` and no held_folder holds (left by a killed
    process); returns what was deleted."""
    removed = []
    for path in Path(parent).glob(f"{prefix}*"):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except NotADirectoryError:  # a file, or a link (O_NOFOLLOW): no one holds it
            path.unlink(missing_ok=True)
            removed.append(path)
            continue
        except OSError:  # gone meanwhile, or not ours to open
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        except BlockingIOError:
            pass  # a running upload holds it
        finally:
            os.close(fd)
    return removed
