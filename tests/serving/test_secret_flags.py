"""--auth, --vllm-api-key and the worker's --token take env:NAME and file:PATH, so no secret shows in
the process list; one that cannot be read stops the start with a sentence naming the flag."""

import contextlib

import pytest

from align import worker
from app import parse_config
from serving.config import parse_auth
from tests.scaleout.fake_replicas import FakeReplica, run_with_engine


def test_auth_from_a_variable_or_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("APP_USERS", "alice:pw1,bob:pw2")
    (tmp_path / "users").write_text("carol:pw3\n")

    assert parse_auth("env:APP_USERS") == {"alice": "pw1", "bob": "pw2"}
    assert parse_auth(f"file:{tmp_path / 'users'}") == {"carol": "pw3"}
    assert parse_auth("dave:pw4") == {"dave": "pw4"}


@pytest.mark.parametrize("argv,says", [
    (["--auth", "env:NO_SUCH_VAR"], "--auth reads the environment variable 'NO_SUCH_VAR', which is not set"),
    (["--vllm-api-key", "env:NO_SUCH_VAR"], "--vllm-api-key reads the environment variable 'NO_SUCH_VAR'"),
    (["--vllm-api-key", "file:/no/such/key"], "--vllm-api-key reads the file /no/such/key, which cannot be read"),
])
def test_unreadable_secret_stops_the_start(argv, says, monkeypatch, capsys):
    monkeypatch.delenv("NO_SUCH_VAR", raising=False)

    with pytest.raises(SystemExit):
        parse_config(argv)
    assert says in capsys.readouterr().err


def test_vllm_api_key_from_a_variable_is_sent_to_the_replicas(monkeypatch):
    monkeypatch.setenv("VLLM_KEY", "sk-replica")
    replica, seen = FakeReplica("http://a:8000"), []
    answer = replica.handle

    def handle(request):
        seen.append(request.headers["authorization"])
        return answer(request)

    monkeypatch.setattr(replica, "handle", handle)

    async def scenario(engine):
        return None

    run_with_engine([replica], scenario, api_key="env:VLLM_KEY")
    assert set(seen) == {"Bearer sk-replica"}


class OneRank:
    is_main = True

    def failures_shared(self):
        return contextlib.nullcontext()


def test_worker_token_from_a_file_is_sent_and_a_missing_one_is_refused(tmp_path, monkeypatch):
    (tmp_path / "token").write_text("sk-admin\n")
    sent = []

    def claim_round(client):
        sent.append(client.headers["authorization"])
        raise worker.WorkerError("stop here")

    monkeypatch.setattr(worker, "claim_round", claim_round)
    run = dict(round_cfg=None, sft_cfg=None, rm_cfg=None, ppo_cfg=None, ranks=OneRank())

    with pytest.raises(worker.WorkerError, match="stop here"):
        worker.run_worker(worker.WorkerConfig(server="http://app:7860", token=f"file:{tmp_path / 'token'}"), **run)
    assert sent == ["Bearer sk-admin"]
    with pytest.raises(worker.WorkerError) as e:
        worker.run_worker(worker.WorkerConfig(server="http://app:7860", token=f"file:{tmp_path / 'none'}"), **run)
    assert str(e.value) == f"--token reads the file {tmp_path / 'none'}, which cannot be read: No such file or directory."
