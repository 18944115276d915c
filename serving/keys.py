"""API keys: `Authorization: Bearer <key>` for the HTTP API, kept hashed at rest.

The key file (`--api-keys FILE`) holds one `user:sha256hex` line per key; the key itself is shown
once, when it is made, and never written anywhere:

    python -m serving.keys add --file keys.txt --user alice     # prints the new key
    python -m serving.keys revoke --file keys.txt --user alice  # removes all of alice's keys

A running app re-reads the file when it changes, so keys are added and revoked without a restart;
while the file is missing or malformed, no key is accepted.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import secrets
import sys
from pathlib import Path

KEY_PREFIX = "sk-"  # lets people (and secret scanners) tell a key from a password
KEY_BYTES = 32  # 256 bits of randomness: guessing is hopeless, so one fast hash at rest is enough
HASH_RE = re.compile(r"[0-9a-f]{64}")
USER_RE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")  # no ':' (the separator) and nothing a log could misread

log = logging.getLogger(__name__)


def hash_key(key: str) -> str:
    """sha256 hex of the key. A slow password hash buys nothing for random 256-bit keys."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def read_key_file(path: Path) -> dict[str, str]:
    """{sha256 hex: user} from a key file; a malformed line is an error naming its line number."""
    hashes = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, _, digest = line.rpartition(":")
        if not USER_RE.fullmatch(user) or not HASH_RE.fullmatch(digest):
            raise ValueError(f"{path} line {number} must look like user:<64 hex digits of sha256>.")
        hashes[digest] = user
    return hashes


def write_key_file(path: Path, lines: list[str]) -> None:
    """Replace the file atomically, owner-only: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(line + "\n" for line in lines))
    os.replace(tmp, path)


def add_key(path: Path, user: str) -> str:
    """Append a new key for `user`; returns the key, which exists nowhere else from now on."""
    if not USER_RE.fullmatch(user):
        raise ValueError("A user name is 1-64 letters, digits or any of _ . @ -.")
    lines = []
    if path.exists():
        read_key_file(path)  # refuse to extend a broken file
        lines = path.read_text().splitlines()
    key = new_key()
    write_key_file(path, [*lines, f"{user}:{hash_key(key)}"])
    return key


def revoke_keys(path: Path, user: str) -> int:
    """Remove every key of `user`; returns how many there were."""
    lines = path.read_text().splitlines()
    kept = [line for line in lines if line.strip().rpartition(":")[0] != user]
    write_key_file(path, kept)
    return len(lines) - len(kept)


class KeyRing:
    """The users behind the keys in one key file; re-reads the file when it changes, so `python -m
    serving.keys add` and `revoke` take effect on a running app. Fails closed: while the file is
    missing, unreadable or malformed, no key is valid (a revoked key must never come back because
    a hand edit went wrong)."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self._stamp: tuple[int, int, int] | None = None
        self._hashes: dict[str, str] = {}
        self._problem: str | None = None  # the last reason no key was valid, logged once
        self._reload_if_changed()  # a missing or broken file fails at start, not at the first request

    def user(self, key: str) -> str | None:
        """The user a key belongs to, or None."""
        try:
            self._reload_if_changed()
        except (OSError, ValueError) as e:
            self._report_problem(str(e))
            return None
        # A dict lookup on the hash: timing can at most reveal a prefix of a hash, not of a key.
        return self._hashes.get(hash_key(key))

    def _reload_if_changed(self) -> None:
        try:
            st = self.path.stat()
        except OSError:
            self._hashes, self._stamp = {}, None
            raise
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)  # the inode: `add` and `revoke` replace the file
        if stamp == self._stamp:
            return
        # Fail closed: no key is valid unless this read succeeds. A file that cannot be read is tried
        # again on the next request; a malformed one once it changes.
        self._hashes, self._stamp = {}, None
        try:
            hashes = read_key_file(self.path)
        except ValueError:
            self._stamp = stamp
            raise
        self._hashes, self._stamp = hashes, stamp
        if self._problem is not None:
            log.info("API keys are accepted again: %s reads correctly.", self.path)
            self._problem = None

    def _report_problem(self, problem: str) -> None:
        """Log why no key is valid, once per distinct problem: not once per refused request."""
        if problem != self._problem:
            log.error("No API key is accepted until %s is fixed: %s", self.path, problem)
            self._problem = problem


# ---------------------------------------------------------------------------- command line

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serving.keys",
                                     description="Make and revoke API keys for --api-keys FILE.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("add", "Make a new key for a user and print it (only this once)."),
                       ("revoke", "Remove every key of a user.")):
        command = commands.add_parser(name, help=text)
        command.add_argument("--file", required=True, help="The key file the app reads with --api-keys.")
        command.add_argument("--user", required=True, help="Whose key: the user name rows are stored under.")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = Path(args.file).expanduser()
    try:
        if args.command == "add":
            print(add_key(path, args.user))
        else:
            print(f"Removed {revoke_keys(path, args.user)} key(s) of {args.user}.", file=sys.stderr)
    except (OSError, ValueError) as e:
        print(e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
