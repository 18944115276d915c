"""The UI's login form checks passwords through the same Logins as Basic auth: a locked user or client
address fails to log in even with the right password, and Gradio learns the address from
RememberClientAddress."""

import gradio as gr
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serving.logins import LoginThrottle, Logins, RememberClientAddress
from serving.passwords import hash_password

USERS = {"alice": "right", "bob": hash_password("bobs", iterations=1000)}


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def ui_app(logins: Logins) -> FastAPI:
    with gr.Blocks() as ui:
        gr.Markdown("hello")
    app = gr.mount_gradio_app(FastAPI(), ui, path="", auth=logins.gradio_login)
    app.add_middleware(RememberClientAddress)
    return app


def login(client: TestClient, user: str, password: str) -> int:
    return client.post("/login", data={"username": user, "password": password}).status_code


def test_locked_address_fails_even_with_the_right_password_until_the_back_off_ends():
    clock = Clock()
    app = ui_app(Logins(USERS, throttle=LoginThrottle(clock=clock)))
    attacker, other = TestClient(app, client=("10.0.0.1", 1234)), TestClient(app, client=("10.0.0.2", 1234))

    assert [login(attacker, f"user{i}", "guess") for i in range(5)] == [400] * 5  # unknown users: the address counts
    assert login(attacker, "bob", "bobs") == 400
    assert login(other, "bob", "bobs") == 200

    clock.now += 60
    assert login(attacker, "alice", "right") == 200
