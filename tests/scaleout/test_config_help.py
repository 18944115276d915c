"""Every scale-out config field has help text, which becomes its --flag's help."""

from dataclasses import fields

import pytest

from align.worker import WorkerConfig
from app import parse_config
from serving.remote import RemoteConfig


@pytest.mark.parametrize("config", [RemoteConfig, WorkerConfig])
def test_every_field_has_help(config):
    assert [f.name for f in fields(config) if not f.metadata.get("help")] == []


def test_vllm_url_flag_reaches_the_config():
    cfg = parse_config(["--vllm-url", "http://10.0.0.5:8000,http://10.0.0.6:8000", "--vllm-health-every-s", "2"])

    assert (cfg.remote.url, cfg.remote.health_every_s) == ("http://10.0.0.5:8000,http://10.0.0.6:8000", 2.0)
