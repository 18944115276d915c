"""A tiny random Llama reward model of the LoRA kind learns clearly separable pairs: chosen answers say 'gladly'."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file
from transformers import set_seed

from align.config import RewardConfig
from align.data import split_by_group
from align.reward import RewardScorer, load_score_model, pairwise_accuracy, train_reward_model

TOPICS = ["tea", "maps", "bread", "rain", "chess", "boats", "glue", "kites", "soup", "moss", "jazz", "clay"]


def keyword_pairs(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        prompt = [{"role": "user", "content": f"Can you tell me about {topic}, number {i}?"}]
        rows.append({
            "prompt": prompt,
            "chosen": [{"role": "assistant", "content": f"Gladly! Here is something about {topic}."}],
            "rejected": [{"role": "assistant", "content": f"No. Here is something about {topic}."}],
            "group": f"ranking:{i}",
        })
    return rows


def test_reward_model_learns_separable_pairs(tiny_base, tmp_path):
    train, held_out = split_by_group(keyword_pairs(96), eval_fraction=0.25, seed=0)
    cfg = RewardConfig(kind="lora", learning_rate=3e-3, epochs=3, batch_size=8, gradient_accumulation=1, max_length=64,
                       lora_r=8, lora_alpha=16, lora_dropout=0.0, min_pairs=8)
    out = tmp_path / "rm"

    metrics = train_reward_model(base_model_path=tiny_base, train_rows=train, eval_rows=held_out, cfg=cfg,
                                 out_dir=out)

    assert metrics["held_out_pairs"] == 24
    assert metrics["held_out_accuracy"] >= 0.9
    assert json.loads((out / "rm_metrics.json").read_text())["held_out_accuracy"] == metrics["held_out_accuracy"]
    saved = load_file(out / "adapter_model.safetensors")
    lora_b = [w for name, w in saved.items() if "lora_B" in name]
    assert lora_b and all(w.abs().sum() > 0 for w in lora_b)  # LoRA B starts at zero: nonzero means it trained
    set_seed(cfg.seed)
    initial_score = load_score_model(tiny_base, num_layers=0, pad_token_id=2).score.weight
    assert not torch.equal(saved["base_model.model.score.weight"], initial_score)
    assert pairwise_accuracy(RewardScorer.load(out), held_out) == metrics["held_out_accuracy"]
