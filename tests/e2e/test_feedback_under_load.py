"""Concurrent clients send feedback through the API, some requests time out on purpose and are
retried with the same Idempotency-Key: every event is stored exactly once, under the id its client
was given. (bench/feedback_load.py runs the same at 50 clients x 200 events.)"""

import pytest

from bench.feedback_load import LoadConfig, run_load
from bench.common import AppProcess


@pytest.fixture
def writer_app(model_path, tmp_path):
    """Its own app and data dir: the shared app_server's counts must not move under other tests."""
    # No automatic rounds: one would start after 50 votes and compete for the CPU.
    app = AppProcess(data_dir=tmp_path, model_path=model_path, extra=["--max-tokens", "8", "--align-every", "0"])
    try:
        app.wait_ready()
        yield app
    finally:
        app.stop()


def test_every_event_is_stored_exactly_once(writer_app):
    cfg = LoadConfig(clients=20, events=20, timeout_every=4, replay_every=5)

    report = run_load(writer_app.url, writer_app.data_dir / "chat.db", cfg)

    assert report["exactly_once"] == {"expected": 400, "acknowledged": 400, "stored": 400, "duplicated": 0,
                                      "missing": 0, "id_mismatches": 0}
    # Every 4th event's first attempt gets a 1 ms read timeout; most fire (85 of 100 in one run), but a
    # fast answer can beat it, so only require that retries after a timeout really happened.
    assert 0 < report["injected_timeouts"] <= 100
    assert report["replay_mismatches"] == 0
    assert report["replayed"] >= 80  # the deliberate repeats (every 5th), plus retries after a timeout
    with writer_app.db() as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*) FROM idempotency_keys").fetchone()[0] == 400
