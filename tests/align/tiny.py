"""The tiny random Llama of the PPO tests, importable by the scripts that tests start under a launcher
(conftest's fixtures hand out the same model)."""

from types import SimpleNamespace

import torch
from transformers import LlamaConfig, LlamaForCausalLM

PAD_ID, EOS_ID = 0, 1
SPECIAL_TOKENS = SimpleNamespace(pad_token_id=PAD_ID, eos_token_id=EOS_ID)  # all a rollout reads of a tokenizer


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    """A 2-layer random Llama over 64 tokens, the same weights for the same seed."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        # The default 0.02 gives near-uniform logits that attention LoRA can barely move; 0.2 gives a
        # model with preferences (entropy ~3.6 nats of ln 64 = 4.16) that PPO can shift in a few steps.
        initializer_range=0.2,
        bos_token_id=None,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
    )
    return LlamaForCausalLM(config).eval()
