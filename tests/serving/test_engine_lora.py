"""A LoRA adapter made with PEFT loads into the running engine (no restart) and serves."""

from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def answer(engine_runner, model_name):
    request = ChatCompletionRequest(model=model_name, messages=QUESTION, temperature=0, max_tokens=12)
    return engine_runner.run(engine_runner.engine.chat(request)).choices[0].message.content


VERSION = 1001  # the session's engine is shared: other tests load their own adapter-v1


def test_peft_adapter_loads_and_serves(engine_runner, random_adapter, tmp_path):
    engine = engine_runner.engine
    path = random_adapter(tmp_path / "adapter")
    base_answer = answer(engine_runner, engine.served_name)

    engine_runner.run(engine.load_adapter(VERSION, path))
    active = engine.activate(VERSION)
    assert active.name == f"adapter-v{VERSION}" and active.adapter_version == VERSION
    adapter_answer = answer(engine_runner, active.name)
    models = [m.id for m in engine_runner.run(engine.models()).data]

    engine.activate(None)
    assert f"adapter-v{VERSION}" in models
    assert adapter_answer != base_answer
    assert answer(engine_runner, engine.served_name) == base_answer  # base untouched by the adapter
