"""Every serving config field has help text, which becomes its --flag's help; access flags that
make no sense alone are refused."""

from dataclasses import fields

import pytest

from app import parse_config
from serving.config import EngineConfig, SamplingConfig, ServeConfig


@pytest.mark.parametrize("config", [EngineConfig, SamplingConfig, ServeConfig])
def test_every_field_has_help(config):
    assert [f.name for f in fields(config) if not f.metadata.get("help")] == []


@pytest.mark.parametrize("argv,says", [
    (["--api-keys", "keys.txt"], "--api-keys needs --auth"),
    (["--auth", "a:b", "--api-keys", "/no/such/keys.txt"], "No such file"),
    (["--rate-limit", "lots"], "--rate-limit must look like 30/min"),
])
def test_access_flags_are_checked_at_start(argv, says, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keys.txt").write_text("")

    with pytest.raises(SystemExit):
        parse_config(argv)
    assert says in capsys.readouterr().err
