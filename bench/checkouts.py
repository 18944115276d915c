"""What the benchmarks that put this checkout's serving code beside an earlier checkout's share
(bench/lora_ops.py, bench/transition_step.py): each run of a side is a fresh child process of the
same script that imports the project from that side's checkout, and writes its result to a file
(vLLM prints to stdout)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def add_side_args(parser: argparse.ArgumentParser, *, out: str) -> None:
    """The options every such benchmark takes, and the hidden ones its child processes get."""
    parser.add_argument("--model", default=str(REPO / "data/models/SmolLM2-135M-Instruct"))
    parser.add_argument("--runs", type=int, default=2, help="Runs per side, the sides alternating.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed repeats of each phase within a run.")
    parser.add_argument("--tokens", type=int, default=32, help="Tokens decoded per request.")
    parser.add_argument("--out", default=str(REPO / out))
    parser.add_argument("--before", help="A checkout of an earlier revision (e.g. a git worktree): its serving "
                                         "code runs as the side 'before'.")
    for hidden in ("--side", "--code", "--payload", "--result"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)


def run_child(args, measure) -> bool:
    """In a run's child process (--side given): import the project from --code, write
    measure(args, payload) to --result and return True. In the parent: False."""
    if not args.side:
        return False
    sys.path.insert(0, args.code)
    import serving

    assert Path(serving.__file__).resolve().is_relative_to(Path(args.code).resolve()), serving.__file__
    Path(args.result).write_text(json.dumps(measure(args, json.loads(args.payload))))
    return True


def run_side(script: str, side: str, args, payload, result: Path) -> dict:
    """One run of `side` ("before": the --before checkout; any other: this one) in a child process."""
    code = args.before if side == "before" else str(REPO)
    env = {**os.environ, "PYTHONPATH": code}  # vLLM's engine process imports the worker extension from here
    from serving.engine import cpu_cores_bind

    env.setdefault("VLLM_CPU_OMP_THREADS_BIND", cpu_cores_bind("all"))
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    subprocess.run([sys.executable, script, "--side", side, "--payload", json.dumps(payload),
                    "--tokens", str(args.tokens), "--repeats", str(args.repeats), "--model", args.model,
                    "--result", str(result), "--code", code],
                   env=env, capture_output=True, text=True, check=True)
    return json.loads(result.read_text())


def revision(checkout: str) -> str:
    return subprocess.run(["git", "-C", checkout, "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
