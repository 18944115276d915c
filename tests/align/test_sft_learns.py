"""SFT on demonstrations lowers the completion loss of a tiny model and saves a vLLM-style LoRA adapter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from align.config import SFTConfig
from align.sft import train_sft

TOKENIZER_DIR = Path(__file__).resolve().parents[2] / "data" / "models" / "SmolLM2-135M-Instruct"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


@pytest.fixture
def tiny_base(tmp_path) -> Path:
    """A randomly initialised 2-layer Llama with SmolLM2's tokenizer and chat template."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=2, tie_word_embeddings=True,
                         initializer_range=0.2)  # larger logits than the default 0.02: the loss can fall far
    path = tmp_path / "tiny-llama"
    LlamaForCausalLM(config).save_pretrained(path)
    for name in TOKENIZER_FILES:
        shutil.copy(TOKENIZER_DIR / name, path / name)
    return path


def demonstrations(n: int) -> list[dict]:
    return [
        {"prompt": [{"role": "user", "content": f"Say hello to friend {i}."}],
         "completion": [{"role": "assistant", "content": "Hello there, my good friend!"}]}
        for i in range(n)
    ]


def test_sft_lowers_completion_loss_and_saves_adapter(tiny_base, tmp_path):
    torch.set_num_threads(1)  # the box has 2 shared cores; one thread avoids fighting over them
    cfg = SFTConfig(learning_rate=1e-2, epochs=4, batch_size=4, gradient_accumulation=1, max_length=64,
                    lora_r=8, lora_alpha=16, lora_dropout=0.0, min_demonstrations=4)
    out = tmp_path / "adapter"

    metrics = train_sft(base_model_path=tiny_base, rows=demonstrations(8), cfg=cfg, out_dir=out)

    assert metrics["last_loss"] < metrics["first_loss"] - 2.0
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert adapter_config["modules_to_save"] is None
    assert (out / "adapter_model.safetensors").is_file()
