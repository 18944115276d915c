"""SFT on demonstrations lowers the completion loss of a tiny model and saves a vLLM-style LoRA adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.tiny import save_tiny_base

from align.config import SFTConfig
from align.sft import train_sft


@pytest.fixture
def tiny_base(tmp_path, model_path) -> Path:
    # larger logits than the default 0.02: the loss can fall far
    return save_tiny_base(tmp_path / "tiny-llama", model_path, initializer_range=0.2)


def demonstrations(n: int) -> list[dict]:
    return [
        {"prompt": [{"role": "user", "content": f"Say hello to friend {i}."}],
         "completion": [{"role": "assistant", "content": "Hello there, my good friend!"}]}
        for i in range(n)
    ]


def test_sft_lowers_completion_loss_and_saves_adapter(tiny_base, tmp_path):
    cfg = SFTConfig(learning_rate=1e-2, epochs=4, batch_size=4, gradient_accumulation=1, max_length=64,
                    lora_r=8, lora_alpha=16, lora_dropout=0.0, min_demonstrations=4)
    out = tmp_path / "adapter"

    metrics = train_sft(base_model_path=tiny_base, rows=demonstrations(8), cfg=cfg, out_dir=out)

    assert metrics["last_loss"] < metrics["first_loss"] - 2.0
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert adapter_config["modules_to_save"] is None
    assert (out / "adapter_model.safetensors").is_file()
