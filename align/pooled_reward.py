"""The pooled reward model: the base model's own hidden states, frozen, pooled over the answer's tokens
and read by a linear head trained with the pairwise loss -log sigmoid(r_chosen - r_rejected).

Why not fine-tune the LM (align.reward's LoRA kind)? Users reward properties that show anywhere in an
answer (a number, a phrase, paragraphs), while a sequence classifier reads one position, the last token,
and has to learn to carry the property there. The mean and the max over the answer's tokens of the
residual stream (after the middle and the last of `num_layers` blocks) already hold such properties: a
linear head on them, fitted in seconds once each answer is read (~2 minutes in all), was right on 84-85 % of
held-out answer pairs that differed in a rule, where the LoRA reward model, in 5-9 minutes, was right on
64-75 % (bench/rm_rule_pairs.py, BENCHMARKS.md). The backbone runs once per distinct answer (the answers
of a ranking are in many pairs), in inference mode.

A saved pooled reward model is one directory:
    pooled_head.safetensors   the head (weight over the features: [mean | max] x 2 layers, log length and its
                              square) and the features' mean and scale
    tokenizer files           the tokenizer the features were read with, pad token set
    reward_model.json         kind "pooled", base model path, blocks read, max_length (written last)
    rm_metrics.json           held-out accuracy, pair counts, train time, config
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from safetensors.torch import load_file, save_file
from transformers import AutoModel, PreTrainedTokenizerBase

from .config import LENGTH_TERMS, RewardConfig
from .data import Row
from .packed import packed_frozen_linears
from .reward import encode_answer_parts, load_lowest_blocks, load_tokenizer, save_reward_files

HEAD_FILE = "pooled_head.safetensors"
Chat = list[dict[str, str]]
# Length enters as x = log(1 + tokens) and, with RewardConfig.length_terms 2, (x - LOG_LENGTH_CENTER)^2: with
# both, the head's score can peak at a length (users who want 40-120 words) instead of only rising or falling
# with it (issue 15: on x alone the reward model learned "shorter", 67 % on the band's pairs, and PPO overshot
# below the band). The centre, ~64 tokens, keeps the square from being a near copy of x over 10-256 tokens.
LOG_LENGTH_CENTER = math.log1p(64)
# With length_terms 7, x and six bumps over it (one per doubling from 8 to 256 tokens): the score can take any
# shape over length, e.g. a band with both edges (on the band's pairs, 24 of 26 too-short pairs right against 20
# with the square, both with the length weights free of the head's penalty; bench/rm_length_heads.py).
LENGTH_BUMP_CENTERS = torch.log1p(torch.tensor([8.0, 16.0, 32.0, 64.0, 128.0, 256.0]))
LENGTH_BUMP_WIDTH = 0.5  # in log length; a doubling is 0.69, so neighbouring bumps overlap
assert LENGTH_TERMS[2] == 1 + len(LENGTH_BUMP_CENTERS)


def length_features(tokens: torch.Tensor, terms: int) -> torch.Tensor:  # [B] answer tokens -> [B, terms]
    log_length = torch.log1p(tokens.float()).unsqueeze(1)
    if terms == LENGTH_TERMS[2]:
        return torch.cat([log_length, torch.exp(-((log_length - LENGTH_BUMP_CENTERS) / LENGTH_BUMP_WIDTH).square())], 1)
    return torch.cat([log_length, (log_length - LOG_LENGTH_CENTER).square()][:terms], dim=1)


def load_backbone(base_model_path: str | Path, *, num_layers: int) -> torch.nn.Module:
    """The base model's lowest num_layers blocks (0 or more than it has: all), frozen, whose output is the
    residual stream itself: the final norm belongs to the LM head this model does not use."""
    model = load_lowest_blocks(AutoModel, base_model_path, num_layers=num_layers)
    model.norm = torch.nn.Identity()
    return model.eval().requires_grad_(False)


class PooledFeatures:
    """Owns the frozen backbone and the tokenizer; turns (prompt, answer) into one feature vector each: the
    mean and the max over the answer's tokens of the residual stream after the middle block and after the
    last one, and the answer's length in tokens (length_features). (The middle one
    carries the words themselves, the last one more of their meaning: on two rules, a word and a digit, each
    alone won on one rule and lost on the other; both together held on both.)"""

    def __init__(self, backbone: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, *, max_length: int,
                 batch_size: int = 16, length_terms: int = 2) -> None:
        self.backbone, self.tokenizer, self.max_length, self.batch_size = backbone, tokenizer, max_length, batch_size
        self.length_terms = length_terms

    def __call__(self, prompts: Sequence[Chat], answers: Sequence[str]) -> torch.Tensor:  # [N, 4H + length_terms]
        encoded = [encode_answer_parts(self.tokenizer, p, a, max_length=self.max_length)
                   for p, a in zip(prompts, answers)]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))  # similar lengths share a batch
        out: list[torch.Tensor | None] = [None] * len(encoded)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                for i, row in zip(batch, self._pool([encoded[i] for i in batch])):
                    out[i] = row
        return torch.stack(out) if out else torch.empty(0)  # type: ignore[arg-type]

    def _pool(self, batch: list[tuple[list[int], int]]) -> torch.Tensor:
        width = max(len(ids) for ids, _ in batch)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in batch])  # [B, T]
        attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch])  # [B, T]
        # The answer's tokens; an answer the template renders with no token of its own is read at its last token.
        answer = torch.zeros_like(attention, dtype=torch.bool)
        for row, (ids, start) in enumerate(batch):
            answer[row, min(start, len(ids) - 1):len(ids)] = True
        device = next(self.backbone.parameters()).device
        states = self.backbone(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                               output_hidden_states=True).hidden_states  # embeddings, then after each block
        depth = len(states) - 1
        mask = answer.unsqueeze(-1)  # [B, T, 1]
        pooled = []
        for hidden in (states[depth // 2], states[depth]):
            hidden = hidden.float().cpu()  # [B, T, H]
            pooled += [(hidden * mask).sum(1) / mask.sum(1), hidden.masked_fill(~mask, float("-inf")).amax(1)]
        # Averages and maxima do not show how long an answer is, and length is what users judge most often.
        pooled.append(length_features(answer.sum(1), self.length_terms))
        return torch.cat(pooled, dim=1)  # [B, 4H + length_terms]


class PooledHead(torch.nn.Module):
    """score = w . (features - center) / scale: standardised features, so one weight decay fits every layer's range."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(dim))
        self.register_buffer("center", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # [N, D] -> [N]
        return ((features - self.center) / self.scale) @ self.weight


def fit_head(chosen: torch.Tensor, rejected: torch.Tensor, cfg: RewardConfig) -> tuple[PooledHead, float]:
    """The head that minimises the mean pairwise loss plus the L2 penalty on its weights (head_weight_decay, and
    head_length_weight_decay for the last length_terms features) over the pairs' features ([N, D] each), by
    full-batch Adam; returns it and the final training loss."""
    head = PooledHead(chosen.shape[1])
    both = torch.cat([chosen, rejected])
    head.center.copy_(both.mean(0))
    head.scale.copy_(both.std(0) + 1e-4)  # a feature constant over every answer stays at zero after centering
    torch.manual_seed(cfg.seed)
    optimizer = torch.optim.Adam(head.parameters(), lr=cfg.head_learning_rate)
    # Length is a few features of ~2,300; under the same penalty as the states, which also drift with length, the
    # head spreads "length" over the states' many weights, and those can only say "shorter" or "longer".
    decay = torch.full((chosen.shape[1],), cfg.head_weight_decay)
    decay[-cfg.length_terms:] = cfg.head_length_weight_decay
    loss = torch.tensor(0.0)
    for _ in range(cfg.head_steps):
        margin = head(chosen) - head(rejected)
        loss = -torch.nn.functional.logsigmoid(margin).mean() + (decay * head.weight.square()).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return head.requires_grad_(False), loss.item()


def pair_features(features: PooledFeatures, rows: Sequence[Row]) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of every pair's chosen and rejected answer ([N, D] each); each distinct (prompt, answer) is
    read once: a ranking of K answers makes C(K, 2) pairs of only K answers."""
    keys: dict[str, int] = {}
    prompts, answers = [], []
    sides: dict[str, list[int]] = {"chosen": [], "rejected": []}  # each pair's answers, as indices into keys
    for row in rows:
        for side, indices in sides.items():
            key = json.dumps([row["prompt"], row[side][0]["content"]], sort_keys=True)
            if key not in keys:
                keys[key] = len(keys)
                prompts.append(row["prompt"])
                answers.append(row[side][0]["content"])
            indices.append(keys[key])
    table = features(prompts, answers)
    return table[sides["chosen"]], table[sides["rejected"]]


def train_pooled_reward_model(*, base_model_path: str | Path, train_rows: Sequence[Row], eval_rows: Sequence[Row],
                              cfg: RewardConfig, out_dir: Path) -> dict[str, Any]:
    """Read the pairs' answers once, fit the head, measure it on eval_rows, save it to out_dir. Under several
    processes every one computes the same head; rank 0 saves it, and all return once it is on disk."""
    processes = PartialState()  # the launcher's process group, as the HF Trainer of the LoRA kind reads it
    started = time.monotonic()
    tokenizer = load_tokenizer(base_model_path)
    features = PooledFeatures(load_backbone(base_model_path, num_layers=cfg.num_layers), tokenizer,
                              max_length=cfg.max_length, length_terms=cfg.length_terms)
    with packed_frozen_linears(features.backbone):  # every linear is frozen: packed once, read ~1,000 times
        train_features = pair_features(features, train_rows)
        held_out_features = pair_features(features, eval_rows) if eval_rows else None
    head, train_loss = fit_head(*train_features, cfg)
    accuracy = None
    if held_out_features is not None:
        chosen, rejected = held_out_features
        accuracy = float((head(chosen) > head(rejected)).float().mean())  # a tie counts as wrong, as for the LoRA kind
    metrics = {
        "held_out_accuracy": accuracy,
        "held_out_pairs": len(eval_rows),
        "train_pairs": len(train_rows),
        "train_loss": train_loss,
        "train_seconds": round(time.monotonic() - started, 1),
        "processes": processes.num_processes,
        "optimizer_steps": cfg.head_steps,
        "base_model": str(base_model_path),
        "config": asdict(cfg),
    }
    if processes.is_main_process:
        save_reward_files(out_dir, kind="pooled", base_model_path=base_model_path, cfg=cfg, metrics=metrics,
                          write_weights=lambda partial: _save_head(head, tokenizer, partial))
    processes.wait_for_everyone()  # the other ranks load the head rank 0 has written next
    return metrics


def _save_head(head: PooledHead, tokenizer: PreTrainedTokenizerBase, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(directory / HEAD_FILE))
    tokenizer.save_pretrained(directory)


def load_pooled_head(rm_dir: Path) -> PooledHead:
    state = load_file(str(rm_dir / HEAD_FILE))
    head = PooledHead(state["weight"].shape[0])
    head.load_state_dict(state)
    return head.requires_grad_(False)


class PooledScorer:
    """A saved pooled reward model in memory (frozen blocks, head, tokenizer) that turns (prompt, answer)
    pairs into rewards; the same `score` as align.reward.RewardScorer, which loads it for a pooled directory."""

    def __init__(self, features: PooledFeatures, head: PooledHead) -> None:
        self.features, self.head = features, head
        self.model = features.backbone  # what align.policy.packed_scorer packs while PPO scores

    @classmethod
    def load(cls, rm_dir: Path, meta: dict, tokenizer: PreTrainedTokenizerBase, *,
             base_model_path: str | Path | None = None, batch_size: int = 16,
             device: torch.device | str = "cpu") -> PooledScorer:
        backbone = load_backbone(base_model_path or meta["base_model"], num_layers=meta["num_layers"]).to(device)
        head = load_pooled_head(Path(rm_dir))
        length_terms = head.weight.shape[0] - 4 * backbone.config.hidden_size  # after [mean | max] x 2 blocks
        if length_terms not in LENGTH_TERMS:
            raise ValueError(f"The pooled head in {rm_dir} has {head.weight.shape[0]} weights, which does not fit "
                             f"a model of hidden size {backbone.config.hidden_size}: was it trained on another one?")
        features = PooledFeatures(backbone, tokenizer, max_length=meta["max_length"], batch_size=batch_size,
                                  length_terms=length_terms)
        return cls(features, head)

    def score(self, prompts: Sequence[Chat], answers: Sequence[str]) -> list[float]:
        if len(prompts) != len(answers):
            raise ValueError(f"Got {len(prompts)} prompts but {len(answers)} answers.")
        if not answers:
            return []
        return self.head(self.features(prompts, answers)).tolist()
