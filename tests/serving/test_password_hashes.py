"""The --auth users file takes `user:pbkdf2_sha256$<iterations>$<salt>$<hash>` lines beside plain ones;
`python -m serving.passwords hash` makes them; a malformed hash stops the start with its line."""

import io

import pytest

from serving.config import parse_auth
from serving.logins import Logins
from serving.passwords import hash_password, main, password_matches


def test_hashed_line_verifies_and_a_wrong_password_fails(tmp_path):
    users_file = tmp_path / "users.txt"
    users_file.write_text(f"alice:{hash_password('s3cret', iterations=1000)}\nbob:plain\n")
    logins = Logins(parse_auth(str(users_file)))

    assert logins.check("alice", "s3cret", None) and logins.check("bob", "plain", None)
    assert not logins.check("alice", "s3cret ", None)
    assert not logins.check("alice", hash_password("s3cret", iterations=1000), None)


def test_malformed_hash_is_a_start_up_error_naming_the_line(tmp_path):
    users_file = tmp_path / "users.txt"
    users_file.write_text("# users\nbob:plain\nalice:pbkdf2_sha256$600000$c2FsdA==$not-base64\n")

    with pytest.raises(ValueError) as e:
        parse_auth(str(users_file))
    assert str(e.value) == (f"{users_file} line 3 (user 'alice'): a hashed password must look like "
                            "pbkdf2_sha256$<iterations>$<salt base64>$<hash base64>.")


def test_cli_prints_a_line_that_verifies(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("pässwörd\n"))

    assert main(["hash", "--user", "alice"]) == 0
    user, _, stored = capsys.readouterr().out.strip().partition(":")

    assert user == "alice" and stored.startswith("pbkdf2_sha256$600000$")
    assert password_matches(stored, "pässwörd") and not password_matches(stored, "passwörd")


def test_cli_refuses_an_empty_password(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))

    assert main(["hash", "--user", "alice"]) == 2
    assert capsys.readouterr() == ("", "The password is empty; nothing was printed.\n")
