"""Evaluation of a candidate adapter against the active one (or the base model) on held-out prompts:
what the promotion gate reads. Mean reward-model score, KL to the base model, answer length, the
fraction of empty or degenerate (repetitive) answers, and a few samples."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from peft import PeftModel

from align.ppo import PPOConfig, encode_prompts, generate_rollouts, kl_estimate, reference_logprobs

ScoreTexts = Callable[[list[list[dict]], list[str]], Sequence[float]]  # (prompts, answers) -> scores


@dataclass(frozen=True)
class EvalSettings:
    max_new_tokens: int
    temperature: float
    batch_size: int
    seed: int
    samples: int  # answers kept verbatim in the report


def is_degenerate(text: str) -> bool:
    """Empty, or so repetitive that fewer than half of its word trigrams are distinct."""
    words = text.split()
    if not words:
        return True
    trigrams = [tuple(words[i:i + 3]) for i in range(len(words) - 2)]
    return len(trigrams) >= 6 and len(set(trigrams)) / len(trigrams) < 0.5


@torch.no_grad()
def sample_answers(model: PeftModel, tokenizer: Any, prompts: list[list[dict]], settings: EvalSettings,
                   *, with_kl: bool = True) -> tuple[list[str], list[float], list[int]]:
    """Sampled answers of the model as it is set now (adapter on, or inside disable_adapter), each
    answer's KL to the base model (nats, summed over its tokens; 0 without `with_kl`: the base model's
    own answers need no reference pass) and its length in tokens."""
    cfg = PPOConfig(max_new_tokens=settings.max_new_tokens, temperature=settings.temperature, top_p=1.0,
                    batch_size=1, mini_batch_size=1)
    ids = encode_prompts(prompts, tokenizer)
    texts, kls, lengths = [], [], []
    torch.manual_seed(settings.seed)  # the same prompts get comparable samples across models
    for start in range(0, len(ids), settings.batch_size):
        rollout = generate_rollouts(model, tokenizer, ids[start:start + settings.batch_size], cfg)
        if with_kl:
            first = rollout.query_ids.shape[1]
            ref = reference_logprobs(model, rollout.input_ids, rollout.attention_mask, first,
                                     temperature=cfg.temperature)
            per_answer, _ = kl_estimate(rollout.logprobs, ref, rollout.response_mask)  # log-probs from sampling
            kls += per_answer.tolist()
        else:
            kls += [0.0] * len(rollout.response_ids)
        texts += tokenizer.batch_decode(rollout.responses(), skip_special_tokens=True)
        lengths += rollout.response_mask.sum(dim=1).tolist()
    return texts, kls, lengths


def evaluate_model(model: PeftModel, tokenizer: Any, score: ScoreTexts, prompts: list[list[dict]],
                   settings: EvalSettings, *, adapter: str | None) -> dict:
    """Metrics of one adapter (by its PEFT name) or of the base model (adapter=None)."""
    if adapter is None:
        with model.disable_adapter():  # the base model is the KL reference itself
            texts, kls, lengths = sample_answers(model, tokenizer, prompts, settings, with_kl=False)
    else:
        model.set_adapter(adapter)
        texts, kls, lengths = sample_answers(model, tokenizer, prompts, settings)
    scores = [float(s) for s in score(prompts, texts)]
    n = len(texts)
    return {
        "mean_reward": sum(scores) / n,
        "kl_to_base": sum(kls) / n,
        "mean_length": sum(lengths) / n,
        "degenerate_fraction": sum(is_degenerate(t) for t in texts) / n,
        "finite": all(math.isfinite(x) for x in scores + kls),
        "n_prompts": n,
        "samples": [{"prompt": p[-1]["content"], "answer": t, "reward": s}
                    for p, t, s in list(zip(prompts, texts, scores))[: settings.samples]],
    }
