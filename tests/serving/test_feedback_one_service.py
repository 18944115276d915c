"""A vote sent to POST /api/feedback and one sent through the UI's vote go through the same
FeedbackService method: the same call, the same stored row, the same sentence for the same bad input."""

from types import SimpleNamespace

import gradio as gr
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serving.api import LOCAL_API_USER, Auth, build_api, install_error_handlers
from serving.chat_actions import ConversationActions
from serving.config import SamplingConfig
from serving.feedback import FeedbackService
from serving.ui import build_ui
from storage import FeedbackStore


class RecordingService(FeedbackService):
    def __init__(self, *, store):
        super().__init__(store=store)
        self.votes = []

    def vote(self, *args, **kwargs):
        self.votes.append((args, kwargs))
        return super().vote(*args, **kwargs)


@pytest.fixture
def store(tmp_path):
    with FeedbackStore.open(tmp_path) as store:
        yield store


@pytest.fixture
def feedback(store):
    return RecordingService(store=store)


@pytest.fixture
def api(store, feedback):
    app = FastAPI()
    install_error_handlers(app)
    no_engine = SimpleNamespace(engine=None, sampling=SamplingConfig())  # feedback routes never generate
    app.include_router(build_api(chat=no_engine, store=store, feedback=feedback, auth=Auth({}),
                                 max_request_bytes=100_000))
    return TestClient(app)


@pytest.fixture
def ui_vote(store, feedback):
    ui = build_ui(actions=ConversationActions(chat=None, store=store), feedback=feedback,
                  feedback_options=["Wrong"], sampling=SamplingConfig())
    vote = next(f.fn for f in ui.fns.values() if f.api_name == "vote")
    as_local_user = SimpleNamespace(username=LOCAL_API_USER, session_hash="s")  # the API's user without --auth
    return lambda *args: vote(*args, request=as_local_user)


@pytest.fixture
def answer(store):
    cid = store.create_conversation(user=LOCAL_API_USER)
    prompt = store.record_message(conversation_id=cid, user=LOCAL_API_USER, role="user", content="Hi")
    return store.record_message(conversation_id=cid, user=LOCAL_API_USER, role="assistant", content="Hello",
                                parent_id=prompt, model="qwen")


def test_both_doors_make_the_same_call_and_row(api, ui_vote, feedback, store, answer):
    r = api.post("/api/feedback", json={"response_id": answer, "rating": -1, "reason": "Wrong", "comment": "Old."})
    ui_id = ui_vote(answer, -1, "Wrong", "Old.")

    assert r.status_code == 201 and r.json()["id"] == ui_id  # the same vote again: no second row
    assert feedback.votes == [((answer, -1), {"user": LOCAL_API_USER, "reason": "Wrong", "comment": "Old."})] * 2
    assert [(v.id, v.response_id, v.rating, v.reason, v.comment) for v in store.latest_votes()] == [
        (ui_id, answer, -1, "Wrong", "Old.")]


def test_both_doors_refuse_a_long_reason_with_one_sentence(api, ui_vote, store, answer):
    reason = "x" * (store.config.max_reason_chars + 1)

    r = api.post("/api/feedback", json={"response_id": answer, "rating": 1, "reason": reason})
    with pytest.raises(gr.Error) as refused:
        ui_vote(answer, 1, reason)

    assert r.status_code == 400
    assert r.json()["error"]["message"] == refused.value.message == \
        f"A vote reason can be at most {store.config.max_reason_chars:,} characters; got {len(reason):,}."
    assert store.latest_votes() == []
