"""API keys are stored hashed, owner-only, shown once, and read by a running app as they change."""

import hashlib
import stat

import pytest

from serving.keys import KeyRing, add_key, main, read_key_file, revoke_keys


def test_add_stores_only_the_hash_owner_only(tmp_path):
    path = tmp_path / "keys.txt"

    key = add_key(path, "alice")

    assert key.startswith("sk-") and len(key) > 40
    assert path.read_text() == f"alice:{hashlib.sha256(key.encode()).hexdigest()}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_keyring_names_the_user_of_each_key(tmp_path):
    path = tmp_path / "keys.txt"
    alice, bob = add_key(path, "alice"), add_key(path, "bob")

    ring = KeyRing(path)

    assert (ring.user(alice), ring.user(bob), ring.user("sk-guess"), ring.user("")) == ("alice", "bob", None, None)


def test_a_running_keyring_sees_keys_added_and_revoked(tmp_path):
    path = tmp_path / "keys.txt"
    first = add_key(path, "alice")
    ring = KeyRing(path)

    second = add_key(path, "bob")
    assert ring.user(second) == "bob"
    assert revoke_keys(path, "alice") == 1
    assert (ring.user(first), ring.user(second)) == (None, "bob")


def test_malformed_file_is_refused_with_its_line(tmp_path):
    path = tmp_path / "keys.txt"
    path.write_text("# comment\nalice:not-a-hash\n")

    with pytest.raises(ValueError, match="line 2"):
        read_key_file(path)
    with pytest.raises(ValueError):
        add_key(path, "bob")
    with pytest.raises(ValueError):
        add_key(tmp_path / "other.txt", "bad:name")


def test_cli_prints_the_key_once(tmp_path, capsys):
    path = tmp_path / "keys.txt"

    assert main(["add", "--file", str(path), "--user", "carol"]) == 0
    key = capsys.readouterr().out.strip()

    assert KeyRing(path).user(key) == "carol"
    assert key not in path.read_text()
