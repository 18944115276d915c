"""Fixtures for the PPO tests: a tiny random Llama and the two special token ids PPO needs."""

import pytest
import torch

from bench.tiny import save_tiny_base
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


@pytest.fixture
def tiny_base(tmp_path, model_path):
    """The tokenizer comes from the prepared default model (the session fixture prepares it on a fresh checkout)."""
    return save_tiny_base(tmp_path / "tiny-llama", model_path)
