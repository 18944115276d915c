"""SFT computes its loss on the completion only: every prompt token's label is -100."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from align.config import SFTConfig
from align.sft import build_sft_trainer

TOKENIZER_DIR = Path(__file__).resolve().parents[2] / "data" / "models" / "SmolLM2-135M-Instruct"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


@pytest.fixture
def tiny_base(tmp_path) -> Path:
    """A randomly initialised 2-layer Llama with SmolLM2's tokenizer and chat template."""
    config = LlamaConfig(vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=2, tie_word_embeddings=True)
    path = tmp_path / "tiny-llama"
    LlamaForCausalLM(config).save_pretrained(path)
    for name in TOKENIZER_FILES:
        shutil.copy(TOKENIZER_DIR / name, path / name)
    return path


def test_only_completion_tokens_have_labels(tiny_base, tmp_path):
    torch.set_num_threads(1)  # the box has 2 shared cores; one thread avoids fighting over them
    rows = [
        {"prompt": [{"role": "user", "content": "What is the capital of France?"}],
         "completion": [{"role": "assistant", "content": "Paris."}]},
        {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Two plus two?"}],
         "completion": [{"role": "assistant", "content": "Four, of course."}]},
    ]
    trainer = build_sft_trainer(base_model_path=tiny_base, rows=rows, cfg=SFTConfig(batch_size=2),
                                output_dir=str(tmp_path / "scratch"))
    batch = next(iter(trainer.get_train_dataloader()))
    decode = trainer.processing_class.decode

    trained = sorted(decode(labels[labels != -100]) for labels in batch["labels"])

    assert trained == ["Four, of course.<|im_end|>\n", "Paris.<|im_end|>\n"]
