"""A LoRA adapter made with PEFT loads into the running engine (no restart) and serves."""

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM
from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def make_adapter(model_path, out_dir):
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    # Random (not zero) B matrices so the adapter visibly changes the answer.
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(base, config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)  # large enough to change a greedy answer
    model.save_pretrained(out_dir)
    return str(out_dir)


def answer(engine_runner, model_name):
    request = ChatCompletionRequest(model=model_name, messages=QUESTION, temperature=0, max_tokens=12)
    return engine_runner.run(engine_runner.engine.chat(request)).choices[0].message.content


VERSION = 1001  # the session's engine is shared: other tests load their own adapter-v1


def test_peft_adapter_loads_and_serves(engine_runner, model_path, tmp_path):
    engine = engine_runner.engine
    path = make_adapter(model_path, tmp_path / "adapter")
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
