"""Fake `vllm serve` replicas behind an httpx.MockTransport, for RemoteEngine's routing and
adapter-sync logic without starting vLLM (test_replicas.py does that with real servers)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import httpx

BASE = "SmolLM2-135M-Instruct"


@dataclass
class FakeReplica:
    url: str
    down: bool = False  # connections refused
    adapters: dict[str, str] = field(default_factory=dict)  # name -> path
    refuse_paths: set[str] = field(default_factory=set)  # adapter paths whose load answers a 500
    chats: list[dict] = field(default_factory=list)  # request bodies it answered

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        path = request.url.path
        if path == "/health":
            return httpx.Response(200)
        if path == "/v1/models":
            cards = [{"id": BASE, "max_model_len": 2048}] + [
                {"id": n, "parent": BASE, "root": p} for n, p in self.adapters.items()]
            return httpx.Response(200, json={"object": "list", "data": cards})
        if path == "/v1/load_lora_adapter":
            return self.load(json.loads(request.content))
        if path == "/v1/chat/completions":
            return self.chat(json.loads(request.content))
        return httpx.Response(404, json={"detail": "Not Found"})

    def load(self, body: dict) -> httpx.Response:
        if body["lora_path"] in self.refuse_paths:
            return httpx.Response(500, json={"error": {"message": "bad weights", "type": "InternalServerError",
                                                       "code": 500}})
        if body["lora_name"] in self.adapters:
            return httpx.Response(400, json={"error": {"message": f"The lora adapter '{body['lora_name']}' has "
                                                       "already been loaded.", "type": "InvalidUserInput",
                                                       "code": 400}})
        self.adapters[body["lora_name"]] = body["lora_path"]
        return httpx.Response(200, text="Success")

    def chat(self, body: dict) -> httpx.Response:
        if body["model"] != BASE and body["model"] not in self.adapters:
            return httpx.Response(404, json={"error": {"message": f"The model `{body['model']}` does not exist.",
                                                       "type": "NotFoundError", "code": 404}})
        if body.get("max_tokens", 1) > 100:
            return httpx.Response(400, json={"error": {"message": "max_tokens is too large", "type":
                                                       "BadRequestError", "code": 400}})
        self.chats.append(body)
        answer = f"from {self.url}"
        if not body.get("stream"):
            return httpx.Response(200, json={
                "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})
        chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
                  {"choices": [{"index": 0, "delta": {"content": answer}, "finish_reason": "stop"}]}]
        sse = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return httpx.Response(200, text=sse, headers={"content-type": "text/event-stream"})


def transport(*replicas: FakeReplica) -> httpx.MockTransport:
    by_host = {httpx.URL(r.url).netloc: r for r in replicas}
    return httpx.MockTransport(lambda request: by_host[request.url.netloc].handle(request))


def run_with_engine(replicas: list[FakeReplica], scenario, **cfg):
    """Run `scenario(engine)` (a coroutine function) on a RemoteEngine over the fake replicas."""
    from serving.remote import RemoteConfig, RemoteEngine

    config = RemoteConfig(url=",".join(r.url for r in replicas), health_every_s=3600, start_timeout_s=5, **cfg)

    async def main():
        async with RemoteEngine.start(config, transport=transport(*replicas)) as engine:
            return await scenario(engine)

    return asyncio.run(main())


def chat_request(**overrides):
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

    return ChatCompletionRequest.model_validate(
        {"model": BASE, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, **overrides})
