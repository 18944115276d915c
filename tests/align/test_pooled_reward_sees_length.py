"""Averages and maxima over an answer's tokens do not show its length, and length is what users judge most
often: the pooled features end with the log of the answer's length in tokens (the template's end-of-turn
tokens included) and its squared distance from ~64 tokens, and a reward model on them learns users who
prefer the shorter of two alike answers, and users who want a length band (neither shorter nor longer)."""

from __future__ import annotations

import math

import pytest
import torch

from align.config import RewardConfig
from align.data import split_by_group
from align.pooled_reward import PooledFeatures, fit_head, length_features, load_backbone
from align.reward import encode_answer_parts, load_tokenizer, train_reward_model
from tests.align.test_reward_learns import TOPICS

PROMPT = [{"role": "user", "content": "Tell me about tea."}]


def test_the_last_feature_is_the_log_length(tiny_base):
    tokenizer = load_tokenizer(tiny_base)
    features = PooledFeatures(load_backbone(tiny_base, num_layers=0), tokenizer, max_length=96)
    answers = ["tea", "tea " * 12]

    rows = features([PROMPT, PROMPT], answers)

    for row, answer in zip(rows, answers):
        ids, start = encode_answer_parts(tokenizer, PROMPT, answer, max_length=96)
        log_length = math.log1p(len(ids) - start)
        assert math.isclose(row[-2].item(), log_length, rel_tol=1e-6)
        assert math.isclose(row[-1].item(), (log_length - math.log1p(64)) ** 2, rel_tol=1e-5)


def brevity_pairs(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        rows.append({"prompt": [{"role": "user", "content": f"Tell me about {topic}, number {i}."}],
                     "chosen": [{"role": "assistant", "content": " ".join([topic] * (1 + i % 3))}],
                     "rejected": [{"role": "assistant", "content": " ".join([topic] * (8 + i % 5))}],
                     "group": f"ranking:{i}"})
    return rows


def test_the_shorter_of_two_alike_answers_wins(tiny_base, tmp_path):
    train, held_out = split_by_group(brevity_pairs(96), eval_fraction=0.25, seed=0)

    metrics = train_reward_model(base_model_path=tiny_base, train_rows=train, eval_rows=held_out,
                                 cfg=RewardConfig(max_length=96, min_pairs=8), out_dir=tmp_path / "rm")

    assert metrics["held_out_accuracy"] >= 0.9



def band_features(n: int, terms: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs whose pooled states say nothing (noise) and whose length is all: the chosen answer has 30-90
    tokens, the rejected one 5-15 (odd pairs) or 150-250 (even ones)."""
    def side(tokens: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.randn(n, 8, generator=generator), length_features(tokens, terms)], dim=1)

    chosen = torch.randint(30, 91, (n,), generator=generator)
    rejected = torch.where(torch.arange(n) % 2 == 1, torch.randint(5, 16, (n,), generator=generator),
                           torch.randint(150, 251, (n,), generator=generator))
    return side(chosen), side(rejected)


@pytest.mark.parametrize("terms, least, most", [(7, 0.95, 1.0), (2, 0.95, 1.0), (1, 0.0, 0.75)])
def test_a_length_band_needs_the_square(terms, least, most):
    """Users who want a middle length: with the squared term (or the bumps) the head ranks both sides of the
    band; on the log length alone it can rank only one side (about half of these pairs, plus luck)."""
    generator = torch.Generator().manual_seed(0)
    head, _ = fit_head(*band_features(512, terms, generator), RewardConfig(length_terms=terms))
    chosen, rejected = band_features(256, terms, generator)

    accuracy = (head(chosen) > head(rejected)).float().mean().item()

    assert least <= accuracy <= most


def drifting_band_features(n: int, terms: int, short_share: float,
                           generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """As a served model's answers: the pooled states drift with length (256 of them, each a noisy multiple of
    the log length), the chosen answer has 60-159 tokens, the rejected one 10-39 (a short_share of pairs) or
    200-255. Returns chosen and rejected features and which pairs have the short one."""
    def side(tokens: torch.Tensor) -> torch.Tensor:
        log_length = torch.log1p(tokens.float()).unsqueeze(1)
        states = log_length * torch.linspace(0.5, 1.5, 256) + 0.5 * torch.randn(n, 256, generator=generator)
        return torch.cat([states, length_features(tokens, terms)], dim=1)

    short = torch.rand(n, generator=generator) < short_share
    rejected = torch.where(short, torch.randint(10, 40, (n,), generator=generator),
                           torch.randint(200, 256, (n,), generator=generator))
    return side(torch.randint(60, 160, (n,), generator=generator)), side(rejected), short


@pytest.mark.parametrize("terms, length_decay, least, most", [(2, 1.0, 0.0, 0.5), (2, 0.0, 0.9, 1.0),
                                                              (7, 0.0, 0.95, 1.0)])
def test_a_band_seen_mostly_from_above_keeps_its_lower_edge(terms, length_decay, least, most):
    """Most users' rejected answers are too long (15 % too short, as for the base model's answers): under one
    penalty for all weights the head reads "length" through the many states that drift with it, which can only
    say "shorter", and ranks too-short answers above the band; with the length weights free of the penalty it
    keeps both edges (issue 15: the band's reward model scored ~38-token answers above the band)."""
    generator = torch.Generator().manual_seed(0)
    chosen, rejected, _ = drifting_band_features(600, terms, 0.15, generator)
    head, _ = fit_head(chosen, rejected, RewardConfig(length_terms=terms, head_length_weight_decay=length_decay))
    chosen, rejected, short = drifting_band_features(400, terms, 0.5, generator)

    right = head(chosen) > head(rejected)

    assert right[~short].float().mean().item() >= 0.95  # the upper edge, which most pairs show
    assert least <= right[short].float().mean().item() <= most
