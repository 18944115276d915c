"""Run a Python module on several processes the way users launch training (`accelerate launch`), in a
process group of its own that is stopped, exactly that group, if it outlives its timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.conftest import REPO


def launch_command(processes: int) -> list[str]:
    """`accelerate launch` for N CPU processes on a free port. Its --cpu flag starts one process whatever
    --num_processes says (accelerate 1.15 hands --cpu to its single-process launcher), so the CPU
    run goes through the multi-process launcher (torch elastic, as on GPUs); the ranks see no GPU
    and join a gloo process group (align.distributed.start_ranks)."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--main_process_port", "0", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--num_machines", "1"]


def run_launched(args: list[str], *, processes: int, timeout: float, env: dict | None = None
                 ) -> subprocess.CompletedProcess:
    """`launch_command(processes) + args` (or plain python for one process), output captured."""
    command = [*launch_command(processes), *args] if processes > 1 else [sys.executable, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and every rank it started
        stdout, stderr = proc.communicate()
        raise AssertionError(f"{' '.join(command)} ran past {timeout} s:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)
