"""Secrets given on the command line without showing them in the process list.

A flag that takes a secret (--vllm-api-key, the worker's --token, --auth) accepts three forms:

    env:NAME     the value of the environment variable NAME
    file:PATH    the first line of the file PATH, stripped
    anything     taken literally, as before (visible to every user of the machine in `ps`)

It lives in storage/, the lowest layer, because both serving/ and align/ read secrets and neither
may import the other.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_PREFIX = "env:"
FILE_PREFIX = "file:"


class SecretNotFound(ValueError):
    """An env: or file: secret that cannot be read; the message names the flag and says why."""


def read_secret(value: str, what: str) -> str:
    """The secret `value` stands for; `what` names the flag in error sentences, e.g. '--token'."""
    if value.startswith(ENV_PREFIX):
        return _from_env(value.removeprefix(ENV_PREFIX), what)
    if value.startswith(FILE_PREFIX):
        return _from_file(Path(value.removeprefix(FILE_PREFIX)).expanduser(), what)
    return value


def _from_env(name: str, what: str) -> str:
    secret = os.environ.get(name, "").strip()
    if not secret:
        # An empty secret would silently mean "none" (no API key, no users): refuse it instead.
        raise SecretNotFound(f"{what} reads the environment variable {name!r}, which is not set or is empty.")
    return secret


def _from_file(path: Path, what: str) -> str:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else "it is not readable text"
        raise SecretNotFound(f"{what} reads the file {path}, which cannot be read: {reason}.") from None
    secret = lines[0].strip() if lines else ""
    if not secret:
        raise SecretNotFound(f"{what} reads the file {path}, whose first line is empty.")
    return secret
