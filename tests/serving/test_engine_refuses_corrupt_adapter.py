"""The real engine refuses a corrupt or truncated adapter file with an error (which AdapterManager turns
into a refused activation, the adapter marked failed: tests/serving/test_adapter_manager.py), keeps
serving the adapter it had, and does not remember the refused name, so a fixed file can load later."""

import re
import shutil

import pytest
from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

from serving.backend import adapter_name
from tests.serving.test_engine_lora import QUESTION

GOOD, GARBAGE, TRUNCATED = 1101, 1102, 1103  # the session's engine is shared: versions no other test uses


def answer(engine_runner, model_name):
    request = ChatCompletionRequest(model=model_name, messages=QUESTION, temperature=0, max_tokens=8)
    return engine_runner.run(engine_runner.engine.chat(request)).choices[0].message.content


def broken_copy(good: str, out, damage) -> str:
    shutil.copytree(good, out)
    weights = out / "adapter_model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    return str(out)


@pytest.mark.parametrize("version, damage", [
    (GARBAGE, lambda data: b"not a safetensors file" * 100),
    (TRUNCATED, lambda data: data[: len(data) // 2]),
])
def test_a_damaged_adapter_is_refused_and_serving_goes_on(engine_runner, random_adapter, tmp_path, version, damage):
    engine = engine_runner.engine
    good = random_adapter(tmp_path / "good")
    engine_runner.run(engine.load_adapter(GOOD, good))
    engine.activate(GOOD)
    before = answer(engine_runner, engine.active.name)
    broken = broken_copy(good, tmp_path / "broken", damage)  # outside the check: only the load may fail
    try:
        # vLLM's own refusal (its ErrorResponse, which Engine.load_adapter raises with vLLM's message), not
        # any error on the way: the sentence after the colon is vLLM's, for the admin tab to show.
        refusal = rf"^vLLM could not load adapter v{version} from {re.escape(broken)}: \S"
        with pytest.raises(RuntimeError, match=refusal):
            engine_runner.run(engine.load_adapter(version, broken))
        assert adapter_name(version) not in engine.serving_models.lora_requests
        assert engine.active.adapter_version == GOOD
        assert answer(engine_runner, engine.active.name) == before

        engine_runner.run(engine.load_adapter(version, good))  # the same version, files fixed: loads now
        assert adapter_name(version) in engine.serving_models.lora_requests
    finally:
        engine.activate(None)
