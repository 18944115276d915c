"""A secret flag takes env:NAME, file:PATH or the value itself; an env: or file: that cannot be read
is an error with a sentence naming the flag."""

import pytest

from storage.secrets import SecretNotFound, read_secret


def test_env_file_and_literal(tmp_path, monkeypatch):
    monkeypatch.setenv("APP_TOKEN", "sk-from-env")
    (tmp_path / "token").write_text("  sk-from-file  \nsecond line\n")

    assert read_secret("env:APP_TOKEN", "--token") == "sk-from-env"
    assert read_secret(f"file:{tmp_path / 'token'}", "--token") == "sk-from-file"
    assert read_secret("sk-literal", "--token") == "sk-literal"


def test_unset_or_empty_variable_is_an_error(monkeypatch):
    monkeypatch.delenv("NO_SUCH_VAR", raising=False)
    monkeypatch.setenv("EMPTY_VAR", "")

    with pytest.raises(SecretNotFound) as e:
        read_secret("env:NO_SUCH_VAR", "--token")
    assert str(e.value) == "--token reads the environment variable 'NO_SUCH_VAR', which is not set or is empty."
    with pytest.raises(SecretNotFound, match="'EMPTY_VAR', which is not set or is empty"):
        read_secret("env:EMPTY_VAR", "--token")


def test_missing_or_empty_file_is_an_error(tmp_path):
    (tmp_path / "empty").write_text("\n")

    with pytest.raises(SecretNotFound) as e:
        read_secret(f"file:{tmp_path / 'missing'}", "--vllm-api-key")
    assert str(e.value) == (f"--vllm-api-key reads the file {tmp_path / 'missing'}, which cannot be read: "
                            "No such file or directory.")
    with pytest.raises(SecretNotFound) as e:
        read_secret(f"file:{tmp_path / 'empty'}", "--vllm-api-key")
    assert str(e.value) == f"--vllm-api-key reads the file {tmp_path / 'empty'}, whose first line is empty."
