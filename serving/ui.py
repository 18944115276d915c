"""Gradio Blocks UI: lays out the Chat and Compare tabs and wires their events to
`ConversationActions` (chatting) and `FeedbackService` (thumbs, rewrites, rankings); the Admin
tab (serving.admin_ui) is added when an AdminPanel is given. No storage or generation logic lives here. Every word on the page comes from serving.i18n:
labels as markers the browser translates (`T`), run-time messages through `tr` in the locale
of the request."""

from __future__ import annotations

import logging
import sqlite3

import gradio as gr

from serving.admin import AdminPanel
from serving.admin_ui import AdminTab, admin_api
from serving.chat import ChatError
from serving.chat_actions import ChatView, ConversationActions, footer_id, strip_footer
from serving.feedback import UI_SOURCE, FeedbackService
from serving.i18n import (LOAD_JS, LOCALES, SWITCH_JS, SWITCH_LABEL, locale_of, reason_choices, reason_of, tr,
                          ui_text as T)
from storage.errors import DATABASE_UNAVAILABLE, StoreError, is_database_fault

log = logging.getLogger(__name__)

MAX_K = 4  # the Compare tab shows at most four candidates side by side
CONCURRENCY = 32  # streaming events served at once; the engine batches them


def ui_user(request: gr.Request) -> str:
    """With --auth the login name; without it each browser session is its own anonymous user."""
    return request.username or f"anon-{request.session_hash}"


# What handlers show as a sentence: refusals, and a locked or failing database (else Gradio says only 'Error').
REFUSED = (ChatError, StoreError, sqlite3.DatabaseError)


def _refuse(e: Exception):
    if isinstance(e, sqlite3.DatabaseError):
        if not is_database_fault(e):
            raise e  # a constraint the validation missed: a bug, logged with its traceback
        log.error("A UI action failed in the database: %s", e)
        raise gr.Error(DATABASE_UNAVAILABLE)
    raise gr.Error(getattr(e, "message", None) or str(e))


def _vote(feedback: FeedbackService, response_id: int, rating: int, *, user: str, reason: str | None,
          comment: str | None = None) -> int:
    """A vote from the page or gr.api. Gradio sends an empty box, or an argument a script left out,
    as '': that is no reason or no comment, stored as None."""
    try:
        return feedback.vote(response_id, rating, user=user, reason=reason or None, comment=comment or None)
    except REFUSED as e:
        _refuse(e)


def _rewrite(feedback: FeedbackService, response_id: int, text: str, *, user: str) -> int:
    """A rewrite from the page or gr.api; an edited answer still carries the footer the chat shows."""
    try:
        return feedback.rewrite(response_id, strip_footer(text), user=user)
    except REFUSED as e:
        _refuse(e)


def _rank(feedback: FeedbackService, response_ids: list[int], *, user: str) -> int:
    try:
        return feedback.rank(response_ids, user=user, source=UI_SOURCE)
    except REFUSED as e:
        _refuse(e)


def build_ui(*, actions: ConversationActions, feedback: FeedbackService, feedback_options: list[str], sampling,
             admin: AdminPanel | None = None, title: str = "Chat that learns") -> gr.Blocks:
    """The page; mount it with `i18n=serving.i18n.gradio_translations()` so its markers translate."""
    with gr.Blocks(title=title) as demo:
        with gr.Row(equal_height=True):
            gr.Markdown(T("app.intro"), scale=5)
            language = gr.Radio([(name, code) for code, name in LOCALES.items()], value=None, label=SWITCH_LABEL,
                                scale=1, min_width=180, elem_id="language-switch")
        with gr.Tab(T("tab.chat"), elem_id="chat-tab") as chat_tab:
            chatbot = _chat_tab(actions, feedback, feedback_options, sampling)
        with gr.Tab(T("tab.compare"), elem_id="compare-tab") as compare_tab:
            _compare_tab(actions, feedback, sampling)
        tabs = [chat_tab, compare_tab]
        if admin is not None:  # shown to admins only (see AdminTab.show_tab)
            admin_tab = AdminTab(admin, user_of=ui_user)
            admin_tab.build(demo, other_tabs=[chat_tab, compare_tab])
            admin_api(admin, user_of=ui_user)
            tabs.append(admin_tab.tab)
        _api_endpoints(actions, feedback)
        _language_switch(demo, language, chatbot, feedback_options, tabs)
    demo.queue(default_concurrency_limit=CONCURRENCY)
    return demo


def _language_switch(demo: gr.Blocks, language: gr.Radio, chatbot: gr.Chatbot, reasons: list[str],
                     tabs: list[gr.Tab]):
    """On load the page takes the saved choice or the browser's language (LOAD_JS), and a pick on
    the switch changes it at once and is kept (SWITCH_JS); the server then shows the thumbs-down
    reasons, which Gradio does not translate itself, in the same language, and sends the tab
    names again (Gradio 6.31 re-translates a tab's name only when it is drawn again)."""
    outputs = [language, chatbot, *tabs]

    def localize(locale):
        names = [gr.Tab(label=tab.label) for tab in tabs]  # the same markers, translated anew
        return [locale, gr.Chatbot(feedback_options=reason_choices(reasons, locale)), *names]

    demo.load(localize, [language], outputs, js=LOAD_JS, api_visibility="private")
    language.input(localize, [language], outputs, js=SWITCH_JS, api_visibility="private")


def _sampling_controls(sampling):
    with gr.Accordion(T("sampling"), open=False):
        temperature = gr.Slider(0.0, 2.0, value=sampling.temperature, step=0.05, label=T("sampling.temperature"))
        top_p = gr.Slider(0.05, 1.0, value=sampling.top_p, step=0.05, label=T("sampling.top_p"))
        max_tokens = gr.Slider(1, sampling.max_tokens_limit, value=sampling.max_tokens, step=1,
                               label=T("sampling.max_tokens"))
    return temperature, top_p, max_tokens


def _chat_tab(actions: ConversationActions, feedback: FeedbackService, feedback_options: list[str],
              sampling) -> gr.Chatbot:
    view = gr.State(ChatView())
    with gr.Row():
        history = gr.Dropdown(label=T("chat.history"), choices=[], value=None, scale=4, interactive=True,
                              elem_id="chat-history")
        new_btn = gr.Button(T("chat.new"), scale=1, elem_id="chat-new")
    chatbot = gr.Chatbot(label=T("chat.chatbot"), height=480, editable="all", buttons=["copy"],
                         feedback_options=reason_choices(feedback_options, "en"), elem_id="chatbot")
    with gr.Row():
        box = gr.Textbox(label=T("chat.message"), placeholder=T("chat.placeholder"), show_label=False, scale=5,
                         lines=1, elem_id="chat-input")
        send_btn = gr.Button(T("chat.send"), variant="primary", scale=1, elem_id="chat-send")
    with gr.Row():
        comment = gr.Textbox(label=T("chat.comment"), placeholder=T("chat.comment_placeholder"), show_label=False,
                             scale=5, elem_id="chat-comment")
        comment_btn = gr.Button(T("chat.add_comment"), scale=1, elem_id="chat-add-comment")
    temperature, top_p, max_tokens = _sampling_controls(sampling)

    async def send(text, v, t, p, m, request: gr.Request):
        if not text or not text.strip():
            raise gr.Error(tr("msg.type_message", locale_of(request)))
        user = ui_user(request)
        try:
            async for messages, v in actions.send(text, v, user=user, temperature=t, top_p=p, max_tokens=int(m)):
                yield messages, v, ""
        except REFUSED as e:
            _refuse(e)

    async def retry(v, t, p, m, data: gr.RetryData, request: gr.Request):
        try:
            async for messages, v in actions.regenerate(v, data.index, user=ui_user(request),
                                                        temperature=t, top_p=p, max_tokens=int(m)):
                yield messages, v
        except REFUSED as e:
            _refuse(e)

    def like(v, data: gr.LikeData, request: gr.Request):
        if data.liked in (None, ""):
            return v  # a rating taken back: the earlier vote stays stored, nothing new to add
        rating = 1 if data.liked is True or data.liked == "Like" else -1
        shown = data.liked if isinstance(data.liked, str) and data.liked not in ("Like", "Dislike") else None
        reason = reason_of(shown, feedback_options) if shown else None
        rid = v.ids[data.index]
        _vote(feedback, rid, rating, user=ui_user(request), reason=reason)
        v.last_vote = (rid, rating, reason)
        return v

    def add_comment(text, v, request: gr.Request):
        if v.last_vote is None:
            raise gr.Error(tr("msg.vote_first", locale_of(request)))
        rid, rating, reason = v.last_vote
        _vote(feedback, rid, rating, user=ui_user(request), reason=reason, comment=text)
        gr.Info(tr("msg.comment_saved", locale_of(request)))
        return ""

    async def edit(v, t, p, m, data: gr.EditData, request: gr.Request):
        user = ui_user(request)
        try:
            msg = actions.store.message(v.ids[data.index], user=user)
            if msg.role == "assistant":
                _rewrite(feedback, msg.id, data.value, user=user)
                gr.Info(tr("msg.rewrite_saved", locale_of(request)))
                messages, v = actions.view(v.conversation_id, user=user)
                messages[data.index]["content"] = data.value
                yield messages, v
                return
            # An edited question starts a new branch from the same point.
            async for messages, v in actions.send(data.value, v, user=user, parent_id=msg.parent_id,
                                                  temperature=t, top_p=p, max_tokens=int(m)):
                yield messages, v
        except REFUSED as e:
            _refuse(e)

    def new_conversation():
        return [], ChatView()

    def resume(conversation_id, request: gr.Request):
        if conversation_id is None:
            return [], ChatView()
        try:
            return actions.view(int(conversation_id), user=ui_user(request))
        except REFUSED as e:
            _refuse(e)

    def list_conversations(request: gr.Request):
        return gr.Dropdown(choices=actions.conversation_choices(user=ui_user(request),
                                                                untitled=tr("chat.untitled", locale_of(request))))

    sampling_inputs = [temperature, top_p, max_tokens]
    for trigger in (box.submit, send_btn.click):
        trigger(send, [box, view, *sampling_inputs], [chatbot, view, box], api_name="send"
                if trigger == send_btn.click else False).then(list_conversations, None, history,
                                                               api_visibility="private")
    chatbot.retry(retry, [view, *sampling_inputs], [chatbot, view], api_visibility="private")
    chatbot.like(like, [view], [view], api_visibility="private")
    chatbot.edit(edit, [view, *sampling_inputs], [chatbot, view], api_visibility="private")
    comment_btn.click(add_comment, [comment, view], [comment], api_visibility="private")
    new_btn.click(new_conversation, None, [chatbot, view], api_visibility="private")
    history.input(resume, [history], [chatbot, view], api_visibility="private")
    gr.on([history.focus], list_conversations, None, history, api_visibility="private")
    return chatbot


def _answer_header(i: int, answer: str) -> str:
    """'**Answer B**' over the i-th candidate; `answer` is the word, translated or a marker."""
    return f"**{answer} {chr(65 + i)}**"


def _compare_tab(actions: ConversationActions, feedback: FeedbackService, sampling):
    ids_state = gr.State([])
    prompt = gr.Textbox(label=T("compare.prompt"), placeholder=T("compare.prompt_placeholder"),
                        elem_id="compare-prompt")
    with gr.Row():
        k = gr.Slider(2, MAX_K, value=3, step=1, label=T("compare.k"), elem_id="compare-k")
        go = gr.Button(T("compare.generate"), variant="primary", elem_id="compare-generate")
    temperature, top_p, max_tokens = _sampling_controls(sampling)
    columns, boxes, ranks = [], [], []
    with gr.Row():
        for i in range(MAX_K):
            with gr.Column(visible=i < 3) as col:
                boxes.append(gr.Markdown(value=_answer_header(i, T("compare.answer")), elem_id=f"compare-answer-{i}"))
                ranks.append(gr.Dropdown([str(r) for r in range(1, MAX_K + 1)], label=T("compare.rank"),
                                         value=None, elem_id=f"compare-rank-{i}"))
            columns.append(col)
    submit = gr.Button(T("compare.submit"), elem_id="compare-submit")

    async def generate(text, kk, t, p, m, request: gr.Request):
        kk = int(kk)
        locale = locale_of(request)
        if not text or not text.strip():
            raise gr.Error(tr("msg.type_prompt", locale))
        word = tr("compare.answer", locale)
        try:
            async for ids, texts in actions.candidates(text, kk, user=ui_user(request), temperature=t, top_p=p,
                                                       max_tokens=int(m)):
                shown = [f"{_answer_header(i, word)}\n\n{texts[i]}" if i < kk else "" for i in range(MAX_K)]
                yield [ids, *shown]
        except REFUSED as e:
            _refuse(e)

    def show_k(kk):
        return [gr.Column(visible=i < int(kk)) for i in range(MAX_K)]

    # The ranks come in as one dict keyed by component: Gradio does not pass gr.Request to a
    # handler whose inputs are collected by *args, so submitting a ranking from the page failed.
    def submit_ranking(values: dict, request: gr.Request):
        locale = locale_of(request)
        ids = values[ids_state]
        if not ids:
            raise gr.Error(tr("msg.generate_first", locale))
        chosen = [values[r] for r in ranks[: len(ids)]]
        if sorted(chosen, key=str) != [str(r) for r in range(1, len(ids) + 1)]:
            raise gr.Error(tr("msg.rank_each", locale, k=len(ids)))
        order = [rid for _, rid in sorted(zip((int(r) for r in chosen), ids))]
        _rank(feedback, order, user=ui_user(request))
        gr.Info(tr("msg.ranking_saved", locale))
        return [[]] + [None] * MAX_K

    k.change(show_k, [k], columns, api_visibility="private")
    go.click(generate, [prompt, k, temperature, top_p, max_tokens], [ids_state, *boxes], api_visibility="private")
    submit.click(submit_ranking, {ids_state, *ranks}, [ids_state, *ranks], api_visibility="private")


def _api_endpoints(actions: ConversationActions, feedback: FeedbackService):
    """The same actions for scripts using gradio_client (the ids come from each answer's footer)."""

    def vote(response_id: int, rating: int, reason: str = "", comment: str = "",
             request: gr.Request = None) -> int:
        """Thumbs up (1) or down (-1) on an answer; returns the vote id."""
        return _vote(feedback, int(response_id), int(rating), user=ui_user(request), reason=reason, comment=comment)

    def rewrite(response_id: int, content: str, request: gr.Request = None) -> int:
        """A better version of an answer; returns the demonstration id."""
        return _rewrite(feedback, int(response_id), content, user=ui_user(request))

    async def compare(prompt: str, k: int = 3, request: gr.Request = None) -> list[dict]:
        """K candidate answers to one prompt: [{response_id, content}, ...]."""
        if not prompt or not prompt.strip():
            raise gr.Error(tr("msg.type_prompt", locale_of(request)))
        ids, texts = [], []
        try:
            async for ids, texts in actions.candidates(prompt, int(k), user=ui_user(request)):
                pass
        except REFUSED as e:
            _refuse(e)
        return [{"response_id": i, "content": t} for i, t in zip(ids, texts)]

    def rank(response_ids: list[int], request: gr.Request = None) -> int:
        """Order answers to one prompt best to worst; returns the ranking id."""
        return _rank(feedback, [int(r) for r in response_ids], user=ui_user(request))

    gr.api(vote, api_name="vote")
    gr.api(rewrite, api_name="rewrite")
    gr.api(compare, api_name="compare")
    gr.api(rank, api_name="rank")


__all__ = ["build_ui", "ui_user", "footer_id"]
