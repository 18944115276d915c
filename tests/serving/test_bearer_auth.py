"""The API's Auth takes HTTP Basic and, with --api-keys, Bearer keys; admins are the --admin users."""

import base64

import pytest
from starlette.requests import Request

from serving.api import ApiError, Auth
from serving.keys import KeyRing, add_key


def request(authorization: str | None) -> Request:
    headers = [(b"authorization", authorization.encode())] if authorization is not None else []
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def keys(tmp_path):
    path = tmp_path / "keys.txt"
    return {"alice": add_key(path, "alice"), "bob": add_key(path, "bob"), "ring": KeyRing(path)}


def test_bearer_key_and_basic_both_name_the_user(keys):
    auth = Auth({"alice": "pw", "bob": "pw2"}, admins={"alice"}, keys=keys["ring"])

    assert auth.user(request(f"Bearer {keys['bob']}")) == "bob"
    assert auth.admin(request(f"Bearer {keys['alice']}")) == "alice"
    assert auth.user(request(basic("bob", "pw2"))) == "bob"


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer sk-wrong", "bearer ", "Basic !!!", "Token x"])
def test_missing_or_wrong_credentials_are_401(keys, header):
    auth = Auth({"alice": "pw"}, keys=keys["ring"])

    with pytest.raises(ApiError) as e:
        auth.user(request(header))
    assert e.value.status == 401 and "Bearer" in e.value.message


def test_a_non_admin_key_is_403_on_admin_actions(keys):
    auth = Auth({"alice": "pw", "bob": "pw2"}, admins={"alice"}, keys=keys["ring"])

    with pytest.raises(ApiError) as e:
        auth.admin(request(f"Bearer {keys['bob']}"))
    assert e.value.status == 403


def test_without_api_keys_a_bearer_header_is_refused(keys):
    auth = Auth({"alice": "pw"})

    with pytest.raises(ApiError) as e:
        auth.user(request(f"Bearer {keys['alice']}"))
    assert e.value.status == 401 and "Bearer" not in e.value.message


def test_a_key_of_a_user_no_longer_in_auth_is_401(keys):
    auth = Auth({"bob": "pw2"}, admins={"alice"}, keys=keys["ring"])

    with pytest.raises(ApiError) as e:
        auth.admin(request(f"Bearer {keys['alice']}"))
    assert e.value.status == 401
