"""The real vLLM engine on CPU streams a chat answer through vLLM's OpenAI serving classes."""

import json

from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest


async def _collect(engine, request):
    gen = await engine.chat(request)
    chunks = []
    async for sse in gen:
        payload = sse.removeprefix("data: ").strip()
        if payload != "[DONE]":
            chunks.append(json.loads(payload))
    return chunks


def test_streaming_chat_answers_the_question(engine_runner):
    engine = engine_runner.engine
    request = ChatCompletionRequest(model=engine.served_name, stream=True, temperature=0, max_tokens=20,
                                    messages=[{"role": "user", "content": "What is the capital of France?"}])
    chunks = engine_runner.run(_collect(engine, request))
    deltas = [c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]]
    assert len([d for d in deltas if d]) > 2  # streamed in pieces, not one blob
    assert "Paris" in "".join(deltas)
