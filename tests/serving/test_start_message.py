"""The start-up line says who can reach the app: local-only without --auth, a warning when an
unauthenticated app is bound beyond this machine."""

import logging

import pytest

from app import parse_config
from serving.server import start_message


def test_default_host_is_loopback():
    assert parse_config([]).serve.host == "127.0.0.1"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_without_auth_on_loopback_it_says_local_only(host):
    level, message = start_message("M", host, 7860, auth=False)

    assert level == logging.INFO and "local-only" in message and "--auth" in message


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "example.org"])
def test_without_auth_beyond_loopback_it_warns(host):
    level, message = start_message("M", host, 7860, auth=False)

    assert level == logging.WARNING and "WITHOUT --auth" in message and "127.0.0.1" in message


def test_with_auth_any_host_is_plain_info():
    assert start_message("M", "0.0.0.0", 7860, auth=True)[0] == logging.INFO
