"""HTTP Basic auth compares passwords as UTF-8 bytes: a non-ASCII password logs in, a wrong one is a
401 (comparing str raised TypeError, a 500)."""

import base64

import pytest
from starlette.requests import Request

from serving.api import ApiError, Auth
from serving.passwords import hash_password


def basic(user: str, password: str) -> Request:
    header = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return Request({"type": "http", "method": "GET", "path": "/", "headers": [(b"authorization", header.encode())]})


@pytest.mark.parametrize("stored", ["pässwörd", hash_password("pässwörd", iterations=1000)])
def test_non_ascii_password_logs_in(stored):
    assert Auth({"jörg": stored}).user(basic("jörg", "pässwörd")) == "jörg"


@pytest.mark.parametrize("stored", ["pässwörd", "password", hash_password("pässwörd", iterations=1000)])
def test_wrong_non_ascii_password_is_401(stored):
    with pytest.raises(ApiError) as e:
        Auth({"jörg": stored}).user(basic("jörg", "pässwört"))
    assert e.value.status == 401
