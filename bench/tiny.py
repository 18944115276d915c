"""A tiny random base model and a small feedback DB that a whole round trains on in seconds: the
alignment tests train on them, and bench/gpu_check.sh trains on the same (bench/gpu_check_data.py)."""

from __future__ import annotations

import gzip
import itertools
import shutil
from pathlib import Path

from bench.common import HH_TRAIN
from storage.importer import import_pairs
from storage.store import FeedbackStore

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def save_tiny_base(path, tokenizer_dir, *, initializer_range: float = 0.02) -> Path:
    """A randomly initialised 2-layer Llama saved with SmolLM2's tokenizer and chat template."""
    import torch  # here: making a feedback DB (the GPU check's `db` step) needs no torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=2, tie_word_embeddings=True,
                         initializer_range=initializer_range)
    LlamaForCausalLM(config).save_pretrained(path)
    for name in TOKENIZER_FILES:
        shutil.copy(Path(tokenizer_dir) / name, Path(path) / name)
    return Path(path)


def store_with_pairs(data_dir: Path, n: int, *, pairs: Path = HH_TRAIN) -> FeedbackStore:
    """A file DB holding the first n pairs of `pairs` (gzipped JSONL; as rankings of two) plus two rewrites."""
    data_dir.mkdir(parents=True, exist_ok=True)
    sample = data_dir / "sample.jsonl"
    with gzip.open(pairs, "rt") as f:
        sample.write_text("".join(itertools.islice(f, n)))
    store = FeedbackStore.open(data_dir)
    import_pairs(store, sample)
    for ranking in store.rankings()[:2]:
        store.record_demonstration(response_id=ranking.response_ids[1], user="import",
                                   content="I can't help with that, but I can point you to safer options.")
    return store
