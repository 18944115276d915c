"""An engine stand-in for ChatService tests: answers every chat with one text (streamed or not),
or refuses it the way vLLM refuses a prompt that is too long."""

from __future__ import annotations

import json
from types import SimpleNamespace

from serving.backend import ActiveModel


class FakeEngine:
    served_name = "fake-model"

    def __init__(self, *, answer: str = "Hello.", refuse: str | None = None):
        self.active = ActiveModel(name=self.served_name, adapter_version=None)
        self.answer = answer
        self.refuse = refuse  # vLLM's sentence; None: answer
        self.requests: list = []

    async def chat(self, request):
        from vllm.exceptions import VLLMClientError

        self.requests.append(request)
        if self.refuse is not None:
            raise VLLMClientError(self.refuse)
        n = request.n or 1
        if request.stream:
            return self._stream(n)
        choices = [{"index": i, "message": {"role": "assistant", "content": self.answer}, "finish_reason": "stop",
                    "token_ids": [1, 2]} for i in range(n)]
        return SimpleNamespace(model_dump=lambda **_: {"choices": choices, "usage": {"prompt_tokens": 3}})

    async def _stream(self, n: int):
        for i in range(n):
            yield _sse({"choices": [{"index": i, "delta": {"role": "assistant", "content": ""}}]})
            yield _sse({"choices": [{"index": i, "delta": {"content": self.answer}, "finish_reason": "stop"}]})
        yield "data: [DONE]\n\n"


def _sse(chunk: dict) -> str:
    return f"data: {json.dumps(chunk)}\n\n"
