"""`accelerate launch --num_processes 2 -m align worker ...` runs one round for the app: rank 0 alone
claims it, fetches the data and uploads; both ranks train every stage; the app registers exactly one
candidate, whose metrics say two processes trained it."""

import json
from pathlib import Path

import httpx

from tests.launch import run_launched
from tests.scaleout.test_worker_round import TINY_ROUND, app_for_a_worker


def test_two_process_worker_round(model_path, tmp_path):
    app, token, data_dir = app_for_a_worker(model_path, tmp_path)
    try:
        app.wait_ready()
        worker = run_launched(["-m", "align", "worker", "--server", app.url, "--token", token,
                               "--work-dir", str(tmp_path / "worker"), "--model", model_path, "--threads", "1",
                               "--rank-timeout-s", "600", *TINY_ROUND,
                               # No SFT here (2 rewrites < 3): its two-process run is covered by
                               # tests/align/test_round_ranks.py, and late in the suite, beside the
                               # session's engines, two SFT ranks (~5 GB each) were killed for memory.
                               "--sft-min-demonstrations", "3"], processes=2, timeout=1500)
        client = httpx.Client(base_url=app.url, headers={"Authorization": f"Bearer {token}"}, timeout=120)
        rounds = client.get("/api/align/rounds").json()["data"]
        adapters = client.get("/api/adapters").json()["data"]
    finally:
        app.stop()

    assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]
    assert worker.stdout.splitlines().count("version=1") == 1  # rank 0 reports; rank 1 prints nothing
    assert [(r["trigger"], r["status"], r["adapter_version"]) for r in rounds] == [("worker", "succeeded", 1)]
    assert [a["version"] for a in adapters] == [1]
    metrics = json.loads((data_dir / "adapters" / "1" / "metrics.json").read_text())
    assert metrics["training"] == {"processes": 2, "device": "cpu"}
    assert metrics["reward_model"]["processes"] == 2  # the Trainer ran data-parallel on both ranks
    assert [p.name for p in (data_dir / "adapters").iterdir()] == ["1"]
    assert not list(Path(tmp_path / "worker").glob("round-*"))
