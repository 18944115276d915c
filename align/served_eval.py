"""Evaluation answers sampled by the app's serving engine (serving.eval_sampling) instead of this process.

Why: the gate must judge answers as long as the ones users get. In the round process a 2-core machine
decodes ~20 tokens/s, so the evaluation sampled 48-token answers to fit the budget, and a candidate that
had learned what happens after token 48 (a length band, a closing question) was judged on text where
neither model shows it. The serving vLLM, on the same cores, samples at the length it serves: the base
model's answers ~15x faster, a candidate's through its LoRA ~5x (bench/eval_phases.py). This process
still scores the answers with its reward model and takes each answer's KL to the base model from its own
weights (one forward pass with the adapter, one without).

Only a round the app started knows where the engine is (loop.rounds sets EVAL_URL_ENV and the secret),
and only with --eval-on-engine does it ask; from a shell or on a remote trainer
`ServedSampler.from_environment()` is None and the round samples in its own process as before.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import torch

from align.ppo_losses import kl_estimate
from align.rollout import left_pad, model_device, policy_logprobs, reference_logprobs, special_ids
from common.eval_samples import EVAL_TOKEN_ENV, EVAL_URL_ENV, TOKEN_HEADER

# The app is on this machine: an HTTP(S)_PROXY set for the outside world must not carry the request.
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
KL_BATCH = 8  # answers per forward pass: the answer's logits [8, 256, 49k vocab] in float32 are ~0.4 GB


class ServedSamplingError(RuntimeError):
    """The engine could not sample; the message says why (the round then samples in its own process)."""


@dataclass(frozen=True)
class SampledAnswer:
    prompt_ids: list[int]  # the prompt as the engine's chat template encoded it
    answer_ids: list[int]  # the answer's tokens, its EOS included when it ended by itself
    text: str


@dataclass(frozen=True)
class ServedSampler:
    url: str
    token: str
    timeout_s: float = 1800.0  # a stuck app must not hold the round past its own time limit for ever

    @classmethod
    def from_environment(cls) -> ServedSampler | None:
        url, token = os.environ.get(EVAL_URL_ENV), os.environ.get(EVAL_TOKEN_ENV)
        return cls(url=url, token=token) if url and token else None

    def sample(self, model: dict, prompts: list[list[dict]], *, n: int, max_tokens: int | None,
               temperature: float, seed: int) -> tuple[list[SampledAnswer], int]:
        """`n` answers per prompt (prompt by prompt, as align.evaluate lays them out) of `model`
        ({"version": v or None} or {"candidate_dir": path}) and the answer length the engine used."""
        body = {"model": model, "prompts": prompts, "n": n, "max_tokens": max_tokens,
                "temperature": temperature, "seed": seed}
        reply = self._post(body)
        answers = [SampledAnswer(prompt_ids=p["prompt_token_ids"], answer_ids=a["token_ids"], text=a["text"])
                   for p in reply["prompts"] for a in p["answers"]]
        if len(answers) != len(prompts) * n:
            raise ServedSamplingError(f"The engine returned {len(answers)} answers for {len(prompts)} prompts x {n}.")
        return answers, reply["max_tokens"]

    def _post(self, body: dict) -> dict:
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json", TOKEN_HEADER: self.token})
        try:
            with NO_PROXY.open(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            raise ServedSamplingError(f"the app answered {e.code}: {_error_message(e)}") from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise ServedSamplingError(f"the app could not be reached at {self.url}: {e}") from None


def _error_message(e: urllib.error.HTTPError) -> str:
    try:
        return json.loads(e.read())["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return e.reason


@torch.no_grad()
def answer_kls(model: Any, tokenizer: Any, answers: list[SampledAnswer], *, temperature: float) -> list[float]:
    """Each answer's KL to the base model (nats, summed over its tokens; the k1 estimate PPO uses), from
    the model as it is set now (its adapter on) and the same weights with the adapter off."""
    pad_id, _ = special_ids(tokenizer)
    device = model_device(model)
    kls = [0.0] * len(answers)
    order = sorted(range(len(answers)), key=lambda i: len(answers[i].prompt_ids) + len(answers[i].answer_ids))
    for start in range(0, len(order), KL_BATCH):
        batch = order[start:start + KL_BATCH]
        query_ids, query_mask = left_pad([answers[i].prompt_ids for i in batch], pad_id, device)
        response_ids, response_mask = right_pad([answers[i].answer_ids for i in batch], pad_id, device)
        input_ids = torch.cat([query_ids, response_ids], dim=1)
        attention_mask = torch.cat([query_mask, response_mask], dim=1)
        first = query_ids.shape[1]
        logprobs = policy_logprobs(model, input_ids, attention_mask, first, temperature=temperature)
        ref = reference_logprobs(model, input_ids, attention_mask, first, temperature=temperature)
        per_answer, _ = kl_estimate(logprobs, ref, response_mask)
        for i, kl in zip(batch, per_answer.tolist()):
            kls[i] = kl
    return kls


def right_pad(answer_ids: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Answers left-aligned after their prompts: ids [B, T] and mask [B, T] (1 on answer tokens)."""
    width = max(len(a) for a in answer_ids)
    ids = torch.full((len(answer_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(answer_ids), width), dtype=torch.long)
    for row, answer in enumerate(answer_ids):
        ids[row, :len(answer)] = torch.tensor(answer, dtype=torch.long)
        mask[row, :len(answer)] = 1
    return ids.to(device), mask.to(device)
