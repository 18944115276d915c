"""Every label, placeholder and fixed text the page lays out (chat, compare and admin tabs) is a
translation marker (the browser shows it in English or Chinese), except the language switch,
which names both languages."""

from sqlite_utils import Database

import gradio as gr
from gradio.i18n import I18nData

from serving.admin import AdminPanel
from serving.api import Auth
from serving.chat_actions import ConversationActions
from serving.config import SamplingConfig
from serving.feedback import FeedbackService
from serving.i18n import SWITCH_LABEL
from serving.ui import build_ui
from storage import FeedbackStore

MARKER = "__i18n__"
TEXT_PROPS = ("label", "placeholder", "info", "title")


def translated(text) -> bool:
    return isinstance(text, I18nData) or MARKER in str(text)


def test_every_visible_text_is_a_marker():
    store = FeedbackStore(Database(memory=True))
    actions = ConversationActions(chat=None, store=store)  # nothing runs: the page is only laid out
    admin = AdminPanel(store=store, adapters=None, supervisor=None, auth=Auth({}))
    demo = build_ui(actions=actions, feedback=FeedbackService(store=store), feedback_options=["Wrong"],
                    sampling=SamplingConfig(), admin=admin)
    untranslated = []
    for block in demo.blocks.values():
        if type(block).__name__ == "Api":  # gr.api endpoints: nothing on the page
            continue
        for prop in TEXT_PROPS:
            text = getattr(block, prop, None)
            if text and not translated(text) and text != SWITCH_LABEL:  # hidden labels are read out loud
                untranslated.append((type(block).__name__, prop, text))
        if isinstance(block, (gr.Button, gr.Markdown)) and block.value and not translated(block.value):
            untranslated.append((type(block).__name__, "value", block.value))
    assert untranslated == []
