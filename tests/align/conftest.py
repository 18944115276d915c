"""Fixtures for the PPO tests: a tiny random Llama and the two special token ids PPO needs."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tests.align.tiny import SPECIAL_TOKENS
from tests.align.tiny import tiny_llama as make_tiny_llama


@pytest.fixture
def special_tokens():
    """Stands in for a tokenizer: rollouts only read pad_token_id and eos_token_id."""
    return SPECIAL_TOKENS


@pytest.fixture
def tiny_llama():
    """tiny_llama(seed=0) -> a 2-layer random Llama over 64 tokens, the same weights for the same seed."""
    return make_tiny_llama


@pytest.fixture
def one_torch_thread():
    """On 2 shared cores, torch's second thread spin-waits while others run: one thread is ~30x faster here."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def save_tiny_base(path, tokenizer_dir, *, initializer_range: float = 0.02):
    """A randomly initialised 2-layer Llama saved with SmolLM2's tokenizer and chat template."""
    import shutil
    from pathlib import Path

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=2, tie_word_embeddings=True,
                         initializer_range=initializer_range)
    LlamaForCausalLM(config).save_pretrained(path)
    for name in TOKENIZER_FILES:
        shutil.copy(Path(tokenizer_dir) / name, Path(path) / name)
    return Path(path)


@pytest.fixture
def tiny_base(tmp_path, model_path):
    """The tokenizer comes from the prepared default model (the session fixture prepares it on a fresh checkout)."""
    return save_tiny_base(tmp_path / "tiny-llama", model_path)
