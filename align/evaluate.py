"""Evaluation of a candidate adapter against the active one (or the base model) on held-out prompts:
what the promotion gate reads. Both answer the same prompts, several sampled answers each; the gate
reads the paired reward gain (per prompt, the candidate's mean reward minus the reference's) with a
confidence interval over prompts, and per model the mean reward-model score and its spread between
answers to one prompt, KL to the base model, answer length, the fraction of empty or degenerate
(repetitive) answers, and a few samples."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from peft import PeftModel

from align.ppo import PPOConfig
from align.ppo_losses import kl_estimate
from align.rollout import encode_prompts, generate_rollouts, reference_logprobs
from align.served_eval import ServedSampler, answer_kls

ScoreTexts = Callable[[list[list[dict]], list[str]], Sequence[float]]  # (prompts, answers) -> scores


@dataclass(frozen=True)
class EvalSettings:
    max_new_tokens: int
    temperature: float
    batch_size: int
    seed: int
    samples: int  # answers kept verbatim in the report (the first answer of each of the first prompts)
    answers_per_prompt: int = 1  # sampled answers per prompt; the gain is averaged over them per prompt
    served_max_tokens: int | None = None  # answer length when the serving engine samples (None: the app's default)


CONFIDENCE = 0.95  # of the interval on the reward gain that the gate reads


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
    """`settings.answers_per_prompt` sampled answers per prompt (prompt by prompt: the answers of
    prompt i are at i*k ... i*k+k-1) of the model as it is set now (adapter on, or inside
    disable_adapter), each answer's KL to the base model (nats, summed over its tokens; 0 without
    `with_kl`: the base model's own answers need no reference pass) and its length in tokens."""
    cfg = PPOConfig(max_new_tokens=settings.max_new_tokens, temperature=settings.temperature, top_p=1.0,
                    batch_size=1, mini_batch_size=1)
    ids = [p for p in encode_prompts(prompts, tokenizer) for _ in range(settings.answers_per_prompt)]
    # Batches of prompts of similar length waste less of each forward pass on left padding.
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    texts, kls, lengths = [""] * len(ids), [0.0] * len(ids), [0] * len(ids)
    torch.manual_seed(settings.seed)  # the same prompts get comparable samples across models
    for start in range(0, len(order), settings.batch_size):
        batch = order[start:start + settings.batch_size]
        rollout = generate_rollouts(model, tokenizer, [ids[i] for i in batch], cfg)
        if with_kl:
            first = rollout.query_ids.shape[1]
            ref = reference_logprobs(model, rollout.input_ids, rollout.attention_mask, first,
                                     temperature=cfg.temperature)
            per_answer, _ = kl_estimate(rollout.logprobs, ref, rollout.response_mask)  # log-probs from sampling
            for i, kl in zip(batch, per_answer.tolist()):
                kls[i] = kl
        decoded = tokenizer.batch_decode(rollout.responses(), skip_special_tokens=True)
        for i, text, length in zip(batch, decoded, rollout.response_mask.sum(dim=1).tolist()):
            texts[i], lengths[i] = text, length
    return texts, kls, lengths


def evaluate_model(model: PeftModel, tokenizer: Any, score: ScoreTexts, prompts: list[list[dict]],
                   settings: EvalSettings, *, adapter: str | None, served: Served | None = None) -> dict:
    """Metrics of one adapter (by its PEFT name) or of the base model (adapter=None), over
    `settings.answers_per_prompt` answers per prompt; `prompt_rewards` is each prompt's mean reward.
    With `served`, the serving engine samples the answers (of served.model, the same weights) and this
    process scores them and takes their KL."""
    if adapter is None:
        with model.disable_adapter():  # the base model is the KL reference itself
            texts, kls, lengths, limit = _answers(model, tokenizer, prompts, settings, served, with_kl=False)
    else:
        model.set_adapter(adapter)
        texts, kls, lengths, limit = _answers(model, tokenizer, prompts, settings, served, with_kl=True)
    k = settings.answers_per_prompt
    asked = [p for p in prompts for _ in range(k)]
    scores = [float(s) for s in score(asked, texts)]
    n = len(texts)
    prompt_rewards = [sum(scores[i:i + k]) / k for i in range(0, n, k)]
    firsts = range(0, min(settings.samples, len(prompts)) * k, k)  # one answer of each of the first prompts
    return {
        "mean_reward": sum(scores) / n,
        "reward_sd": within_prompt_sd(scores, prompt_rewards, k),
        "kl_to_base": sum(kls) / n,
        "mean_length": sum(lengths) / n,
        "max_new_tokens": limit,
        "degenerate_fraction": sum(is_degenerate(t) for t in texts) / n,
        "finite": all(math.isfinite(x) for x in scores + kls),
        "n_prompts": len(prompts),
        "n_answers": n,
        "prompt_rewards": prompt_rewards,
        "samples": [{"prompt": asked[i][-1]["content"], "answer": texts[i], "reward": scores[i]} for i in firsts],
    }


@dataclass(frozen=True)
class Served:
    """One model's answers sampled by the serving engine: the sampler and which model it samples there
    ({"version": v or None} or {"candidate_dir": path}; align.served_eval)."""

    sampler: ServedSampler
    model: dict


def _answers(model: PeftModel, tokenizer: Any, prompts: list[list[dict]], settings: EvalSettings,
             served: Served | None, *, with_kl: bool) -> tuple[list[str], list[float], list[int], int]:
    """Texts, KLs to the base model and lengths of the answers, and the answer length they were sampled at."""
    if served is None:
        return *sample_answers(model, tokenizer, prompts, settings, with_kl=with_kl), settings.max_new_tokens
    answers, limit = served.sampler.sample(served.model, prompts, n=settings.answers_per_prompt,
                                       max_tokens=settings.served_max_tokens, temperature=settings.temperature,
                                       seed=settings.seed)
    kls = answer_kls(model, tokenizer, answers, temperature=settings.temperature) if with_kl else [0.0] * len(answers)
    return [a.text for a in answers], kls, [len(a.answer_ids) for a in answers], limit


def within_prompt_sd(scores: Sequence[float], prompt_rewards: Sequence[float], k: int) -> float | None:
    """The pooled standard deviation of an answer's reward around its prompt's mean (k answers per prompt,
    in prompt order): how far apart two answers to one question typically are, the gate's unit for a gain
    users can notice (loop.gate). What the prompt itself adds is left out, as the paired gain leaves it out.
    None with one answer per prompt."""
    if k < 2:
        return None
    squares = sum((s - prompt_rewards[i // k]) ** 2 for i, s in enumerate(scores))
    return math.sqrt(squares / (len(scores) - len(prompt_rewards)))


def compare(model: PeftModel, tokenizer: Any, score: ScoreTexts, prompts: list[list[dict]], settings: EvalSettings,
            *, candidate_adapter: str, reference_path: str | None, reference_version: int | None,
            engine: ServedSampler | None = None, candidate_dir: str | None = None) -> dict:
    """The candidate (a PEFT adapter already in `model`, saved in candidate_dir) and the reference (the
    adapter at reference_path, registered as reference_version, or the base model for None) on the same
    prompts, compared per prompt: what the gate reads (loop.gate.decide). With `engine`, the serving
    engine samples both models' answers (align.served_eval)."""
    served = (lambda choice: Served(engine, choice)) if engine is not None else (lambda choice: None)
    candidate = evaluate_model(model, tokenizer, score, prompts, settings, adapter=candidate_adapter,
                               served=served({"candidate_dir": candidate_dir}))
    if reference_path is not None:
        model.load_adapter(reference_path, adapter_name="reference")
    reference = evaluate_model(model, tokenizer, score, prompts, settings,
                               adapter="reference" if reference_path is not None else None,
                               served=served({"version": reference_version}))
    gain, interval = paired_gain(candidate["prompt_rewards"], reference["prompt_rewards"], confidence=CONFIDENCE)
    return {"candidate": candidate, "reference": reference, "reference_version": reference_version,
            "reward_gain": gain, "reward_gain_interval": interval, "interval_confidence": CONFIDENCE,
            "eval_prompts": len(prompts), "answers_per_prompt": settings.answers_per_prompt,
            "sampled_by": "serving engine" if engine is not None else "round process",
            "max_new_tokens": candidate["max_new_tokens"]}


def paired_gain(candidate: Sequence[float], reference: Sequence[float], *, confidence: float
                ) -> tuple[float, list[float]]:
    """Mean per-prompt difference (candidate minus reference, each a prompt's mean reward) and its
    two-sided t-interval over prompts: the prompts are the independent units (a prompt's answers
    share it, so they are not independent draws), and pairing removes what the prompt itself adds."""
    diffs = [c - r for c, r in zip(candidate, reference, strict=True)]  # [n prompts]
    n = len(diffs)
    if n < 2:
        raise ValueError(f"An interval over prompts needs at least 2 prompts, not {n}.")
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = t_quantile(confidence, n - 1) * sd / math.sqrt(n)
    return mean, [mean - half, mean + half]


def t_quantile(confidence: float, df: int) -> float:
    """The t with P(|T| <= t) = confidence for Student's t with `df` degrees of freedom (bisection on
    the exact two-sided CDF; no scipy here)."""
    low, high = 0.0, 1.0
    while _t_two_sided(high, df) < confidence:
        high *= 2
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if _t_two_sided(mid, df) < confidence else (low, mid)
    return (low + high) / 2


def _t_two_sided(t: float, df: int) -> float:
    """P(|T| <= t) for an integer number of degrees of freedom: the finite series of Abramowitz &
    Stegun 26.7.3 (odd df) and 26.7.4 (even df) in theta = atan(t / sqrt(df))."""
    theta = math.atan(t / math.sqrt(df))
    sin, cos = math.sin(theta), math.cos(theta)
    if df % 2:
        term, total = cos, 0.0
        for j in range((df - 1) // 2):  # cos + 2/3 cos^3 + 2*4/(3*5) cos^5 + ... up to cos^(df-2)
            total += term
            term *= cos * cos * (2 * j + 2) / (2 * j + 3)
        return 2 / math.pi * (theta + sin * total)
    term, total = 1.0, 0.0
    for j in range(df // 2):  # 1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ... up to cos^(df-2)
        total += term
        term *= cos * cos * (2 * j + 1) / (2 * j + 2)
    return sin * total
