"""A UI action whose database write fails (locked, full) tells the user the same sentence as the
API's 503, instead of Gradio's bare 'Error'."""

import sqlite3
from types import SimpleNamespace

import gradio as gr
import pytest
from sqlite_utils import Database

from serving.chat_actions import ConversationActions
from serving.config import SamplingConfig
from serving.feedback import FeedbackService
from serving.ui import build_ui
from storage import FeedbackStore


class LockedStore(FeedbackStore):
    def record_vote(self, **_):
        raise sqlite3.OperationalError("database is locked")


def api_function(demo: gr.Blocks, name: str):
    return next(f.fn for f in demo.fns.values() if f.api_name == name)


def test_a_locked_database_shows_a_sentence():
    store = LockedStore(Database(memory=True))
    ui = build_ui(actions=ConversationActions(chat=None, store=store), feedback=FeedbackService(store=store),
                  feedback_options=["Wrong"], sampling=SamplingConfig())
    vote = api_function(ui, "vote")

    with pytest.raises(gr.Error, match="The database is busy or unavailable; try again in a moment."):
        vote(1, 1, request=SimpleNamespace(username="alice", session_hash="s"))
