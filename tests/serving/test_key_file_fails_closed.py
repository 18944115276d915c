"""A key file that is gone or malformed makes every key invalid until it is fixed: a revoked key never
comes back because a hand edit went wrong. Each problem is logged once, at ERROR."""

import logging

from serving.keys import KeyRing, add_key


def test_deleted_key_file_refuses_the_old_keys(tmp_path):
    path = tmp_path / "keys.txt"
    key = add_key(path, "alice")
    ring = KeyRing(path)
    assert ring.user(key) == "alice"

    path.unlink()

    assert ring.user(key) is None


def test_malformed_line_refuses_every_key_until_fixed(tmp_path, caplog):
    path = tmp_path / "keys.txt"
    alice, bob = add_key(path, "alice"), add_key(path, "bob")
    ring = KeyRing(path)
    good = path.read_text()

    path.write_text(good + "carol:not-a-hash\n")
    with caplog.at_level(logging.ERROR, logger="serving.keys"):
        assert (ring.user(alice), ring.user(bob), ring.user(alice)) == (None, None, None)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        f"No API key is accepted until {path} is fixed: {path} line 3 must look like "
        f"user:<64 hex digits of sha256>."]

    path.write_text(good)
    assert (ring.user(alice), ring.user(bob)) == ("alice", "bob")
