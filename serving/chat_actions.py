"""The chat and compare actions behind the UI's events and its gr.api endpoints: send, regenerate,
compare, list and resume conversations, and how a thread is shown (each answer with its footer).

The UI module only lays out components and wires events; what an action does (which rows it
writes, which thread it shows) is decided here, against the store and the chat service. Feedback
(thumbs, rankings, rewrites) goes through serving.feedback.FeedbackService, as the API's does.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from functools import partial
from typing import AsyncIterator, Callable

from serving.chat import ChatError, ChatService, Exchange
from serving.limits import RateLimiter
from storage.store import MIN_RANKED_ANSWERS, FeedbackStore, Message

FOOTER = re.compile(r"\n\n<sub>#(\d+) · [^<]*</sub>\s*$")


@dataclass
class ChatView:
    """What the chat tab shows: the conversation and the store id of each displayed message."""

    conversation_id: int | None = None
    ids: list[int] = field(default_factory=list)  # aligned with the chatbot's messages
    last_vote: tuple[int, int, str | None] | None = None  # (response_id, rating, reason)


def answer_footer(m: Message) -> str:
    version = "base" if m.adapter_version is None else f"adapter v{m.adapter_version}"
    return f"\n\n<sub>#{m.id} · {m.model or 'model'} · {version}</sub>"


def strip_footer(text: str) -> str:
    return FOOTER.sub("", text)


def footer_id(text: str) -> int | None:
    match = FOOTER.search(text)
    return int(match.group(1)) if match else None


def render(thread: list[Message]) -> tuple[list[dict], list[int]]:
    """Store thread -> chatbot messages (system prompt hidden) and their ids."""
    shown = [m for m in thread if m.role != "system"]
    messages = [
        {"role": m.role, "content": m.content + answer_footer(m) if m.role == "assistant" else m.content}
        for m in shown
    ]
    return messages, [m.id for m in shown]


class ConversationActions:
    """Chat-tab and compare-tab actions for one user at a time: send, regenerate, compare, list and
    resume conversations. Generating actions first pass the user's rate limit."""

    def __init__(self, *, chat: ChatService, store: FeedbackStore, system_prompt: str = "",
                 limiter: RateLimiter | None = None):
        self.chat = chat
        self.store = store
        self.system_prompt = system_prompt
        self.limiter = limiter or RateLimiter(None)

    # ---------------------------------------------------------------- chat

    def start_conversation(self, *, user: str, first_message: str, source: str = "chat") -> tuple[int, int | None]:
        """A new conversation and its system prompt (if configured) -> (conversation id, root id)."""
        cid = self.store.create_conversation(user=user, title=first_message[:60], source=source)
        root = None
        if self.system_prompt:
            root = self.store.record_message(conversation_id=cid, user=user, role="system",
                                             content=self.system_prompt)
        return cid, root

    def view(self, conversation_id: int, *, user: str) -> tuple[list[dict], ChatView]:
        messages, ids = render(self.store.thread(conversation_id, user=user))
        return messages, ChatView(conversation_id=conversation_id, ids=ids)

    async def send(self, text: str, view: ChatView, *, user: str, parent_id: int | None = None,
                   **sampling) -> AsyncIterator[tuple[list[dict], ChatView]]:
        """Answer the user's message after `parent_id` (default: the end of the shown thread). The
        message, and a new conversation, are stored only once the engine has accepted the request:
        a prompt it refuses (too long) leaves no row for training to pick up."""
        self.limiter.admit(user)  # before anything is stored: a refused message leaves no row
        if view.conversation_id is None:
            history = self._system_turns()
        else:
            if parent_id is None:
                parent_id = view.ids[-1] if view.ids else await asyncio.to_thread(self._root, view.conversation_id,
                                                                                    user=user)
            # Store reads off the event loop, like every store call of a request: a write lock held
            # elsewhere delays this user, not every stream.
            history = [] if parent_id is None else await asyncio.to_thread(self.store.context, parent_id, user=user)
        save = partial(self._store_prompt, text, user=user, conversation_id=view.conversation_id,
                       parent_id=parent_id)
        async for update in self._answer([*history, {"role": "user", "content": text}], save, user=user,
                                         **sampling):
            yield update

    async def regenerate(self, view: ChatView, index: int, *, user: str, **sampling):
        """A new answer to the prompt of the answer at `index` (the old one is kept)."""
        self.limiter.admit(user)
        answer = await asyncio.to_thread(self.store.message, view.ids[index], user=user)
        prompt_id = answer.parent_id if answer.role == "assistant" else answer.id
        stored = Exchange(conversation_id=view.conversation_id, prompt_id=prompt_id)
        context = await asyncio.to_thread(self.store.context, prompt_id, user=user)
        async for update in self._answer(context, lambda: stored, user=user, **sampling):
            yield update

    async def _answer(self, messages: list[dict], save: Callable[[], Exchange], *, user: str, **sampling):
        """Stream one answer to `messages`, showing the thread as `save` left it with the answer
        growing at its end."""
        shown: tuple[list[dict], int, list[int]] = ([], 0, [])

        def save_and_show() -> Exchange:
            nonlocal shown
            exchange = save()
            thread, ids = render(self.store.thread(exchange.conversation_id, user=user))
            shown = (thread, exchange.conversation_id, ids)
            return exchange

        async for _, texts in self.chat.reply(user=user, messages=messages, save=save_and_show, n=1, **sampling):
            thread, conversation_id, ids = shown
            yield thread + [{"role": "assistant", "content": texts[0]}], ChatView(conversation_id, ids)
        yield await asyncio.to_thread(self.view, shown[1], user=user)

    def _store_prompt(self, text: str, *, user: str, conversation_id: int | None = None,
                      parent_id: int | None = None, source: str = "chat") -> Exchange:
        """The user's message after `parent_id`, in a new conversation (with the system prompt) when
        conversation_id is None: all of these rows or, if one is refused, none."""
        with self.store.transaction():
            if conversation_id is None:
                conversation_id, parent_id = self.start_conversation(user=user, first_message=text, source=source)
            prompt_id = self.store.record_message(conversation_id=conversation_id, user=user, role="user",
                                                  content=text, parent_id=parent_id)
        return Exchange(conversation_id=conversation_id, prompt_id=prompt_id)

    def _system_turns(self) -> list[dict[str, str]]:
        """What a new conversation starts with: the configured system prompt, if any."""
        return [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []

    def _root(self, conversation_id: int, *, user: str) -> int | None:
        thread = self.store.thread(conversation_id, user=user)
        return thread[0].id if thread and thread[0].role == "system" else None

    def conversation_choices(self, *, user: str, untitled: str = "Untitled") -> list[tuple[str, int]]:
        """(title · last change, id) per conversation; `untitled` names those without a title, in the
        reader's language."""
        return [(f"{c.title or untitled} · {c.updated_at[:16].replace('T', ' ')}", c.id)
                for c in self.store.conversations(user=user)]

    # ---------------------------------------------------------------- compare

    async def candidates(self, prompt: str, k: int, *, user: str, **sampling) -> AsyncIterator[tuple[list[int], list[str]]]:
        """K answers to one prompt from one engine request (n=K), streamed side by side. The prompt
        is stored only once the engine has accepted the request."""
        self._check_k(k)  # before the rate limit: a request that asks for too many answers costs nothing
        self.limiter.admit(user)
        save = partial(self._store_prompt, prompt, user=user, source="compare")
        messages = [*self._system_turns(), {"role": "user", "content": prompt}]
        async for ids, texts in self.chat.reply(user=user, messages=messages, save=save, n=k, source="compare",
                                                **sampling):
            yield ids, texts

    def _check_k(self, k: object) -> None:
        """Compare makes answers to be ranked: at least two, and no more than a ranking or one
        request may hold."""
        most = min(self.chat.sampling.max_n, self.store.config.max_ranked_answers)
        if not isinstance(k, int) or isinstance(k, bool) or not MIN_RANKED_ANSWERS <= k <= most:
            raise ChatError(f"Compare makes between {MIN_RANKED_ANSWERS} and {most} answers to rank; got {k!r}.")
