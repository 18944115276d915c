"""Which process holds a lock: host, pid and the process's start time.

A pid alone is not an identity: after a crash the kernel may hand the same pid to an unrelated
process. The start time read from /proc (clock ticks since boot) tells the two apart.

Nor is a hostname: two machines may share one (cloned images, "localhost", containers), and a
remote trainer's pid must never be looked up among ours. A host is "<hostname>@<machine id>"
(the rounds table's host column holds that string, so no migration was needed).
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone


MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")  # systemd's, then D-Bus's copy


@dataclass(frozen=True)
class ProcessIdentity:
    host: str  # this_host() of the machine it runs on
    pid: int
    start: str  # "" where /proc is unavailable


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat from field 3 on ([] if there is no such process)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return []
    # Field 2 (the command name) may contain spaces and parentheses: split after its last ')'.
    return stat.rsplit(")", 1)[1].split()


def process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot ('' if unknown)."""
    fields = _stat_fields(pid)
    return fields[19] if fields else ""  # field 22 of the whole line


@functools.cache
def machine_id() -> str:
    """This machine's id ('' where neither file exists: then the hostname alone names it)."""
    for path in MACHINE_ID_FILES:
        try:
            with open(path) as f:
                value = f.read().strip()
        except OSError:
            continue
        if value:
            return value
    return ""


def this_host() -> str:
    """'<hostname>@<machine id>': what identifies this machine in a ProcessIdentity."""
    return f"{socket.gethostname()}@{machine_id()}"


def current_process(pid: int | None = None) -> ProcessIdentity:
    pid = pid or os.getpid()
    return ProcessIdentity(host=this_host(), pid=pid, start=process_start(pid))


def is_alive(identity: ProcessIdentity, *, last_seen: str | None = None, stale_after_s: float = 3600.0) -> bool:
    """Whether the process still runs. On this host we can look; a process on another host (a
    remote trainer) counts as alive until it has been silent for stale_after_s."""
    if identity.host != this_host():
        if not last_seen:
            return False
        seen = datetime.fromisoformat(last_seen)
        return datetime.now(timezone.utc) - seen < timedelta(seconds=stale_after_s)
    try:
        os.kill(identity.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    fields = _stat_fields(identity.pid)
    if not fields or fields[0] in ("Z", "X"):  # a killed child its parent has not reaped yet is a zombie
        return not fields and not identity.start  # no /proc at all: trust kill(0)
    return fields[19] == identity.start
