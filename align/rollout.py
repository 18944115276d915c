"""Sampling answers from a LoRA policy and reading their log-probs: what PPO, RLOO and evaluation
share. Owns the Rollout (a batch of prompts and sampled answers as token tensors), generate_rollouts
(token by token on the KV cache, keeping each step's log-prob, entropy and hidden state), the forward
passes that give the log-probs and values of answers (under the policy, and under the base model with
the adapter off), and turning prompts (token ids or chat messages) into token ids.

Shapes as in align.ppo: B = episodes, Q = prompt length (left-padded), T = answer length (right-padded),
V = vocabulary, H = hidden size. "Mask" always means 1 for a real answer token and 0 for padding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from peft import PeftModel
from torch import nn

from align.packed import merged_lora_linears
from align.ppo_losses import entropy_from_logits

if TYPE_CHECKING:
    from align.ppo import PPOConfig


# ---------------------------------------------------------------- rollouts


@dataclass
class Rollout:
    """Sampled answers to one batch of prompts, as token tensors on the policy's device."""

    query_ids: torch.Tensor  # [B, Q] left-padded prompts
    query_mask: torch.Tensor  # [B, Q] 1 on prompt tokens
    response_ids: torch.Tensor  # [B, T] answers; pad id after the first EOS
    response_mask: torch.Tensor  # [B, T] 1 up to and including the first EOS
    ended_with_eos: torch.Tensor  # [B] bool: the answer stopped by itself within max_new_tokens
    # What the sampling pass saw, when the generator keeps it (None: evaluate_rollout takes one more
    # forward pass to get them). Zero on padding.
    logprobs: torch.Tensor | None = None  # [B, T] log-prob of each answer token at cfg.temperature
    entropy: torch.Tensor | None = None  # [B, T] entropy of the distribution each answer token came from
    hidden: torch.Tensor | None = None  # [B, T, H] final hidden state before each answer token: the value head's input

    @property
    def input_ids(self) -> torch.Tensor:  # [B, Q + T]
        return torch.cat([self.query_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:  # [B, Q + T]
        return torch.cat([self.query_mask, self.response_mask], dim=1)

    def queries(self) -> list[list[int]]:
        return _unpad(self.query_ids, self.query_mask)

    def responses(self) -> list[list[int]]:
        """Answer tokens without padding; the EOS, when there was one, is included."""
        return _unpad(self.response_ids, self.response_mask)


def _unpad(ids: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
    return [row[m.bool()].tolist() for row, m in zip(ids, mask)]


class RolloutGenerator(Protocol):
    """Anything that samples answers from the current policy: HF generate today, the serving engine later."""

    def __call__(self, model: Any, tokenizer: Any, prompt_ids: list[list[int]], cfg: PPOConfig) -> Rollout: ...


def left_pad(
    prompt_ids: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts right-aligned so every answer starts at the same column: ids [B, Q] and mask [B, Q]."""
    width = max(len(p) for p in prompt_ids)
    ids = torch.full((len(prompt_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompt_ids), width), dtype=torch.long)
    for row, prompt in enumerate(prompt_ids):
        ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    return ids.to(device), mask.to(device)


def response_mask_until_eos(response_ids: torch.Tensor, eos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask [B, T] of tokens up to and including the first EOS, and whether each row has an EOS [B]."""
    is_eos = (response_ids == eos_id).long()  # [B, T]
    eos_before = (is_eos.cumsum(dim=1) - is_eos) > 0  # [B, T] an EOS strictly earlier in the row
    return (~eos_before).long(), is_eos.bool().any(dim=1)


def special_ids(tokenizer: Any) -> tuple[int, int]:
    """(pad id, eos id); tokenizers without a pad token pad with EOS, which the masks make harmless."""
    eos_id = tokenizer.eos_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    return pad_id, eos_id


@torch.no_grad()
def generate_rollouts(model: Any, tokenizer: Any, prompt_ids: list[list[int]], cfg: PPOConfig) -> Rollout:
    """Sample one answer per prompt, a token at a time on the model's KV cache, keeping what PPO needs
    from each step: the sampled token's log-prob, the entropy of its distribution and the hidden state the
    value head reads. PPO then needs no second forward pass of the policy at rollout time.

    It draws the same tokens as HF `generate(do_sample=True)` at this temperature and top_p with no other
    logits processor (tests check it), but sets every one of those explicitly: `generate` would fill unset
    ones from the checkpoint's generation_config.json (often top_k=50 or a low temperature), and the tokens
    would then no longer come from the distribution whose log-probs PPO trains on. `tokenizer` only needs
    pad_token_id and eos_token_id. With cfg.merged_sampling the adapter is merged into the weights for
    the loop (align.packed.merged_lora_linears): the same function, computed in fewer matmuls."""
    merged = merged_lora_linears(model) if cfg.merged_sampling else contextlib.nullcontext()
    with merged:
        return _sample(model, tokenizer, prompt_ids, cfg)


def _sample(model: Any, tokenizer: Any, prompt_ids: list[list[int]], cfg: PPOConfig) -> Rollout:
    pad_id, eos_id = special_ids(tokenizer)
    query_ids, query_mask = left_pad(prompt_ids, pad_id, model_device(model))
    batch = query_ids.shape[0]
    attention_mask = query_mask
    first_position = query_mask.sum(dim=1, keepdim=True)  # [B, 1] positions count real tokens, as in training
    out = model(input_ids=query_ids, attention_mask=query_mask, position_ids=(query_mask.cumsum(dim=1) - 1).clamp(min=0),
                use_cache=True, output_hidden_states=True, logits_to_keep=1)
    tokens, logprobs, entropies, hidden = [], [], [], []
    finished = torch.zeros(batch, dtype=torch.bool, device=query_ids.device)  # [B]
    for t in range(cfg.max_new_tokens):
        scaled = out.logits[:, -1].float() / cfg.temperature  # [B, V]
        token = torch.multinomial(torch.softmax(nucleus(scaled, cfg.top_p), dim=-1), 1).squeeze(1)  # [B]
        token = token.masked_fill(finished, pad_id)  # answers that ended are padded, as generate pads them
        step_logprobs = torch.log_softmax(scaled, dim=-1)  # [B, V] the untruncated policy, which PPO trains
        tokens.append(token)
        logprobs.append(step_logprobs.gather(1, token[:, None]).squeeze(1))
        entropies.append(entropy_from_logits(scaled, ~finished))  # rows that ended get 0, as padding does
        hidden.append(out.hidden_states[-1][:, -1])
        finished |= token == eos_id
        if finished.all() or t + 1 == cfg.max_new_tokens:
            break
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(batch, 1)], dim=1)
        out = model(input_ids=token[:, None], attention_mask=attention_mask, position_ids=first_position + t,
                    past_key_values=out.past_key_values, use_cache=True, output_hidden_states=True)
    response_ids = torch.stack(tokens, dim=1)  # [B, T]
    response_mask, ended_with_eos = response_mask_until_eos(response_ids, eos_id)
    return Rollout(
        query_ids=query_ids,
        query_mask=query_mask,
        response_ids=response_ids.masked_fill(response_mask == 0, pad_id),
        response_mask=response_mask,
        ended_with_eos=ended_with_eos,
        logprobs=torch.stack(logprobs, dim=1) * response_mask,
        entropy=torch.stack(entropies, dim=1) * response_mask,
        hidden=torch.stack(hidden, dim=1) * response_mask.unsqueeze(-1),
    )


def nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Logits [B, V] with every token outside the top_p nucleus set to -inf: the smallest set of most
    likely tokens whose probabilities sum to at least top_p (HF's TopPLogitsWarper rule); 1.0 keeps all."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=False)
    outside = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1) <= 1.0 - top_p  # [B, V], ascending order
    outside[:, -1] = False  # the most likely token always stays
    return logits.masked_fill(outside.scatter(1, order, outside), float("-inf"))


def model_device(model: nn.Module) -> torch.device:
    """Where the model's weights are (the device its inputs must be on)."""
    return next(model.parameters()).device


# ---------------------------------------------------------------- forward passes


def _response_forward(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int, temperature: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits [B, T, V] predicting each answer token, the answer's log-probs [B, T] and the last hidden
    states [B, T, H] that precede each answer token."""
    T = input_ids.shape[1] - response_start
    # Columns that are padding in every row (left of the longest prompt, right of the longest answer) cost
    # as much as real tokens and change nothing: a minibatch drawn from a batch often has many.
    used = attention_mask.any(dim=0).nonzero()
    first, end = min(int(used[0]), response_start - 1), max(int(used[-1]) + 1, response_start + 1)
    input_ids, attention_mask = input_ids[:, first:end], attention_mask[:, first:end]
    start = response_start - first
    # Positions count real tokens only, as generate does for left-padded prompts.
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)  # [B, Q' + T']
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        output_hidden_states=True,
        use_cache=False,
        logits_to_keep=input_ids.shape[1] - start + 1,  # skip the prompt's vocabulary projections
    )
    logits = out.logits[:, :-1].float()  # [B, T', V]; position t predicts answer token t
    if temperature != 1.0:
        logits = logits / temperature
    response = input_ids[:, start:]  # [B, T']
    logprobs = logits.gather(-1, response.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    hidden = out.hidden_states[-1][:, start - 1 : -1]  # [B, T', H] the state before each answer token
    trimmed = T - logprobs.shape[1]  # answer columns cut above: all padding, given back as zeros
    if trimmed:  # only then: padding copies, and these are the largest tensors of a step
        logits, logprobs = nn.functional.pad(logits, (0, 0, 0, trimmed)), nn.functional.pad(logprobs, (0, trimmed))
        hidden = nn.functional.pad(hidden, (0, 0, 0, trimmed))
    return logits, logprobs, hidden


def forward_logprobs_values(
    model: Any,
    value_head: nn.Module,
    input_ids: torch.Tensor,  # [B, Q + T]
    attention_mask: torch.Tensor,  # [B, Q + T]
    response_start: int,
    *,
    temperature: float = 1.0,
    with_entropy: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Policy log-probs [B, T], values [B, T] and entropies [B, T] (None unless `with_entropy`: the loss
    does not need them) of the answer tokens, from one forward pass."""
    logits, logprobs, hidden = _response_forward(model, input_ids, attention_mask, response_start, temperature)
    mask = attention_mask[:, response_start:]  # [B, T]
    values = value_head(hidden.float()).squeeze(-1)  # [B, T]
    return logprobs * mask, values * mask, entropy_from_logits(logits, mask) if with_entropy else None


@torch.no_grad()
def policy_logprobs(
    model: Any,
    input_ids: torch.Tensor,  # [B, Q + T]
    attention_mask: torch.Tensor,  # [B, Q + T]
    response_start: int,
    *,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Log-probs [B, T] of the answer tokens under the model as it is set now (its active adapter on)."""
    _, logprobs, _ = _response_forward(model, input_ids, attention_mask, response_start, temperature)
    return logprobs * attention_mask[:, response_start:]


@torch.no_grad()
def reference_logprobs(
    model: PeftModel,
    input_ids: torch.Tensor,  # [B, Q + T]
    attention_mask: torch.Tensor,  # [B, Q + T]
    response_start: int,
    *,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Log-probs [B, T] of the answer tokens under the base model: the same weights with the adapter off."""
    with model.disable_adapter():
        return policy_logprobs(model, input_ids, attention_mask, response_start, temperature=temperature)



# ---------------------------------------------------------------- prompts


Prompt = Sequence[int] | Sequence[dict[str, str]]  # token ids, or chat messages [{"role", "content"}, ...]


def encode_prompts(prompts: Sequence[Prompt], tokenizer: Any) -> list[list[int]]:
    """Token ids for each prompt; chat messages go through the tokenizer's chat template."""
    return [_encode_prompt(prompt, tokenizer) for prompt in prompts]


def fitting_prompts(prompt_ids: list[list[int]], max_tokens: int, *, at_least: int) -> list[list[int]]:
    """The prompts of at most max_tokens tokens (0: all), in their order; when fewer than at_least fit,
    the shortest of the others are added, so a step always has a full batch."""
    if max_tokens <= 0:
        return list(prompt_ids)
    fit = [ids for ids in prompt_ids if len(ids) <= max_tokens]
    if len(fit) < at_least:
        longer = sorted((ids for ids in prompt_ids if len(ids) > max_tokens), key=len)
        fit += longer[: at_least - len(fit)]
    return fit


def _encode_prompt(prompt: Prompt, tokenizer: Any) -> list[int]:
    if len(prompt) > 0 and isinstance(prompt[0], dict):
        encoded = tokenizer.apply_chat_template(list(prompt), add_generation_prompt=True, tokenize=True)
        # transformers 5 returns a BatchEncoding here; older versions return the ids themselves.
        return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)
    return [int(token) for token in prompt]
