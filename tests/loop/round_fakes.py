"""A RoundSupervisor whose round is a small script instead of `python -m align run`, on a clock the
test moves: the script starts a grandchild (as a round starts training ranks), writes both pids to
a file and sleeps."""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from loop.gate import GateConfig
from loop.schedule import ScheduleConfig
from loop.rounds import RoundSupervisor

SLEEPER = """
import os, subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open(sys.argv[1] + ".partial", "w") as f:
    f.write(f"{os.getpid()} {grandchild.pid}")
os.replace(sys.argv[1] + ".partial", sys.argv[1])
time.sleep(600)
"""


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def sleeping_supervisor(store, data_dir: Path, monkeypatch, *, clock=None, script: str = SLEEPER,
                        **schedule) -> RoundSupervisor:
    """Automatic rounds are off (every='0'): only the test starts one."""
    supervisor = RoundSupervisor(store=store, adapters=None, data_dir=data_dir, model="m",
                                 schedule=ScheduleConfig(**{"every": "0", **schedule}), gate=GateConfig(),
                                 clock=clock or Clock())
    pids = data_dir / "pids"
    monkeypatch.setattr(supervisor, "round_command", lambda round_id: [sys.executable, "-c", script, str(pids)])
    return supervisor


def wait_for_pids(data_dir: Path, timeout_s: float = 30) -> tuple[int, int]:
    """(round process, grandchild) once the script has written them."""
    deadline = time.monotonic() + timeout_s
    while not (data_dir / "pids").exists():
        assert time.monotonic() < deadline, "the fake round never started its grandchild"
        time.sleep(0.05)
    child, grandchild = (int(p) for p in (data_dir / "pids").read_text().split())
    return child, grandchild


def running(pid: int) -> bool:
    """Whether pid runs (a zombie no one has reaped yet does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def gone_within(pid: int, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while running(pid):
        if time.monotonic() > deadline:
            os.kill(pid, 9)  # leave nothing behind even when the test fails
            return False
        time.sleep(0.05)
    return True
