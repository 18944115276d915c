"""The round the app starts learns where the serving engine samples its evaluation answers and the
secret to send, and nothing else does: a round of an app without that route (replicas) gets neither,
even when the app itself was started with such variables in its environment."""

from types import SimpleNamespace

from common.eval_samples import EVAL_TOKEN_ENV, EVAL_URL_ENV
from loop.rounds import RoundSupervisor
from serving.eval_sampling import new_endpoint


def supervisor(tmp_path, endpoint) -> RoundSupervisor:
    return RoundSupervisor(store=None, adapters=None, data_dir=tmp_path, model="m",
                           schedule=SimpleNamespace(), gate=None, eval_endpoint=endpoint)


def test_the_round_gets_the_apps_route_and_secret(tmp_path, monkeypatch):
    monkeypatch.setenv(EVAL_TOKEN_ENV, "inherited")
    endpoint = new_endpoint("127.0.0.1", 8123)
    env = supervisor(tmp_path, endpoint).round_environment()
    assert env[EVAL_URL_ENV] == "http://127.0.0.1:8123/api/align/eval-samples"
    assert env[EVAL_TOKEN_ENV] == endpoint.token != new_endpoint("127.0.0.1", 8123).token  # fresh per app start
    assert len(endpoint.token) >= 40 and env["PYTHONUNBUFFERED"] == "1"


def test_without_the_route_the_round_gets_no_address_or_secret(tmp_path, monkeypatch):
    monkeypatch.setenv(EVAL_URL_ENV, "http://elsewhere/")
    monkeypatch.setenv(EVAL_TOKEN_ENV, "inherited")
    env = supervisor(tmp_path, None).round_environment()
    assert EVAL_URL_ENV not in env and EVAL_TOKEN_ENV not in env


def test_the_round_reaches_a_wildcard_bind_on_loopback():
    assert new_endpoint("0.0.0.0", 1).url.startswith("http://127.0.0.1:1/")
    assert new_endpoint("::", 1).url.startswith("http://[::1]:1/")
    assert new_endpoint("10.0.0.5", 1).url.startswith("http://10.0.0.5:1/")
