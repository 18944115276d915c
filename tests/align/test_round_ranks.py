"""`accelerate launch --num_processes 2 -m align run` is one round: rank 0 alone claims the DB's round
lock and registers the candidate, both ranks train it, and nothing is left half-written. The base
is a tiny random Llama: what is tested is the ranks' protocol, not what the model learns."""

import json
from pathlib import Path

from bench.tiny import store_with_pairs
from tests.launch import run_launched
from tests.scaleout.test_worker_round import TINY_ROUND


def test_two_process_round_registers_one_candidate(tmp_path, tiny_base):
    store = store_with_pairs(tmp_path, 24)

    run = run_launched(["-m", "align", "run", "--data-dir", str(tmp_path), "--model", str(tiny_base),
                        "--num-threads", "1", "--rank-timeout-s", "600", *TINY_ROUND], processes=2, timeout=1500)

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.splitlines().count("version=1") == 1  # rank 0 reports; rank 1 prints nothing
    assert [(r.trigger, r.status, r.adapter_version) for r in store.round_lock.rounds()] == [("cli", "succeeded", 1)]
    assert [(a.version, a.status) for a in store.registry.adapters()] == [(1, "candidate")]
    path = Path(store.registry.adapter(1).path)
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["training"] == {"processes": 2, "device": "cpu"}
    assert metrics["reward_model"]["processes"] == 2  # the Trainer ran data-parallel on both ranks
    assert json.loads((path / "sft" / "sft_metrics.json").read_text())["processes"] == 2
    assert [p.name for p in (tmp_path / "adapters").iterdir()] == ["1"]  # no .tmp-* left
