"""Owner-only files: the data directory holds every user's conversations, the adapters trained on
them and the backups, so nothing under it is readable by other accounts on the machine.

Directories are created 0700 and files 0600 explicitly (a mode passed to mkdir/open is still
masked by the umask, so each is chmod-ed to exactly that). Entry points also call
`owner_only_umask()`, which covers the files written by libraries we do not control (PEFT and
torch writing adapter weights, SQLite's -wal and -shm files, log files).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
OWNER_ONLY_UMASK = 0o077  # new files and directories get no group or other bits


def owner_only_umask() -> None:
    """Make every file this process (and the processes it starts) creates owner-only."""
    os.umask(OWNER_ONLY_UMASK)


def private_dir(path: str | Path) -> Path:
    """mkdir -p where every directory this creates is 0700; existing ones are left as they are."""
    path = Path(path)
    missing = []
    for parent in (path, *path.parents):
        if parent.exists():
            break
        missing.append(parent)
    for directory in reversed(missing):
        directory.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        os.chmod(directory, PRIVATE_DIR)
    return path


def private_file(path: str | Path) -> Path:
    """Create the file if missing and make it 0600 (tightening an existing file's mode)."""
    path = Path(path)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE))
    restrict_to_owner(path)
    return path


def restrict_to_owner(path: str | Path) -> None:
    """chmod an existing file of ours to 0600; one owned by another account is left alone."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if stat.S_IMODE(st.st_mode) & ~PRIVATE_FILE and st.st_uid == os.getuid():
        os.chmod(path, PRIVATE_FILE)


def warn_if_shared(directory: str | Path) -> None:
    """A data directory made before this code (or by hand) may be open to other accounts: say so."""
    mode = stat.S_IMODE(os.stat(directory).st_mode)
    if mode & 0o077:
        log.warning("%s is accessible to other users (mode %o); `chmod 700 %s` keeps their conversations "
                    "private.", directory, mode, directory)
