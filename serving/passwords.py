"""Passwords of the --auth users: plain, or hashed so the users file holds no password.

A users file line is `user:password` or `user:pbkdf2_sha256$<iterations>$<salt base64>$<hash base64>`;
make the hashed form with

    python -m serving.passwords hash --user alice     # asks for the password, prints the line

`password_matches` is the one check behind HTTP Basic auth and the UI's login form (serving.logins).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import getpass
import hashlib
import hmac
import secrets
import sys

SCHEME = "pbkdf2_sha256"
# OWASP's 2023 figure for PBKDF2-SHA256. One verification takes 0.15 s on an idle core of the 2-core
# dev box (measured with hashlib.pbkdf2_hmac): too slow to repeat on every Basic-auth API request, so
# serving.logins remembers successful verifications; the login throttle stops repeated wrong guesses
# before they cost a hash each.
ITERATIONS = 600_000
SALT_BYTES = 16
HASH_BYTES = 32  # sha256's output size
FORM = f"{SCHEME}$<iterations>$<salt base64>$<hash base64>"


def is_hashed(stored: str) -> bool:
    return stored.startswith(SCHEME + "$")


def hash_password(password: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    """The stored form of a password: `pbkdf2_sha256$<iterations>$<salt b64>$<hash b64>`."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return "$".join((SCHEME, str(iterations), _b64(salt), _b64(digest)))


def check_stored(stored: str) -> None:
    """Raise ValueError (no sentence of its own: the caller names the line) unless a hashed
    password is well formed; plain passwords pass."""
    if is_hashed(stored):
        _parse_hash(stored)


def password_matches(stored: str, given: str) -> bool:
    """Does `given` match the stored plain or hashed password? Constant-time on bytes: comparing
    str with hmac.compare_digest raises TypeError for a non-ASCII password."""
    if not is_hashed(stored):
        return hmac.compare_digest(stored.encode(), given.encode())
    iterations, salt, expected = _parse_hash(stored)
    return hmac.compare_digest(hashlib.pbkdf2_hmac("sha256", given.encode(), salt, iterations), expected)


def _parse_hash(stored: str) -> tuple[int, bytes, bytes]:
    """(iterations, salt, hash) of a well-formed hashed password, else ValueError."""
    parts = stored.split("$")
    if len(parts) != 4 or not parts[1].isascii() or not parts[1].isdigit() or int(parts[1]) < 1:
        raise ValueError(f"a hashed password must look like {FORM}")
    try:
        salt, digest = base64.b64decode(parts[2], validate=True), base64.b64decode(parts[3], validate=True)
    except binascii.Error:
        raise ValueError(f"a hashed password must look like {FORM}") from None
    if not salt or len(digest) != HASH_BYTES:
        raise ValueError(f"a hashed password must look like {FORM}, with a {HASH_BYTES}-byte hash")
    return int(parts[1]), salt, digest


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---------------------------------------------------------------------------- command line

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serving.passwords",
                                     description="Make users-file lines for --auth that hold a password hash.")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("hash", help="Read a password (from the terminal, or the first line of "
                                               "stdin) and print the user's line for the --auth users file.")
    command.add_argument("--user", required=True, help="The user name the line is for.")
    return parser


def read_password() -> str:
    """From the terminal, asked twice; or the first line of a pipe (`printf '%s\\n' "$PW" | ...`)."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != password:
        raise ValueError("The two passwords differ; nothing was printed.")
    return password


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not args.user or any(c in args.user for c in ":,") or args.user != args.user.strip():
            raise ValueError("A user name must be non-empty, without ':' or ',' and without spaces around it.")
        password = read_password()
        if not password:
            raise ValueError("The password is empty; nothing was printed.")
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    print(f"{args.user}:{hash_password(password)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
