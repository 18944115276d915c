"""Rollouts are sampled by our own loop on the KV cache, which keeps each answer token's log-prob, entropy
and hidden state, so PPO skips a forward pass of the policy: it must draw exactly what HF `generate`
draws, and what it keeps must equal what that forward pass would have computed."""

import dataclasses

import pytest
import torch
from transformers import GenerationConfig

from align.ppo import PPOConfig, build_policy, build_value_head, evaluate_rollout
from align.ppo_losses import FixedKLController
from align.rollout import forward_logprobs_values, generate_rollouts, left_pad, nucleus

PROMPTS = [[5, 6, 7, 8, 9], [3, 4], [10], [11, 12, 13]]  # different lengths: left padding and positions matter


@pytest.mark.parametrize("temperature, top_p", [(1.0, 1.0), (0.7, 1.0), (1.0, 0.8)])
def test_draws_the_tokens_hf_generate_draws(tiny_llama, special_tokens, one_torch_thread, temperature, top_p):
    model = tiny_llama()
    cfg = PPOConfig(max_new_tokens=12, temperature=temperature, top_p=top_p, batch_size=4, mini_batch_size=4)
    torch.manual_seed(3)
    ours = generate_rollouts(model, special_tokens, PROMPTS, cfg)

    query_ids, query_mask = left_pad(PROMPTS, special_tokens.pad_token_id, torch.device("cpu"))
    torch.manual_seed(3)
    sequences = model.generate(
        input_ids=query_ids, attention_mask=query_mask,
        generation_config=GenerationConfig(do_sample=True, temperature=temperature, top_p=top_p, top_k=0,
                                           max_new_tokens=12, pad_token_id=special_tokens.pad_token_id,
                                           eos_token_id=special_tokens.eos_token_id),
    )
    theirs = sequences[:, query_ids.shape[1]:]

    assert ours.response_mask.sum() > 4  # real answers, not an immediate EOS everywhere
    torch.testing.assert_close(ours.response_ids, theirs.masked_fill(ours.response_mask == 0, 0), rtol=0, atol=0)


def test_kept_logprobs_entropy_and_values_match_a_forward_pass(tiny_llama, special_tokens, one_torch_thread):
    policy = build_policy(tiny_llama(), PPOConfig(lora_r=4))
    with torch.no_grad():  # a LoRA that changes the outputs, so the adapter is really in both passes
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.3)
    value_head = build_value_head(32)
    torch.nn.init.normal_(value_head.weight)
    cfg = PPOConfig(max_new_tokens=10, temperature=0.8, batch_size=4, mini_batch_size=4)
    torch.manual_seed(0)
    rollout = generate_rollouts(policy, special_tokens, PROMPTS, cfg)

    with torch.no_grad():
        logprobs, values, entropy = forward_logprobs_values(
            policy, value_head, rollout.input_ids, rollout.attention_mask, rollout.query_ids.shape[1],
            temperature=0.8,
        )
    mask = rollout.response_mask
    torch.testing.assert_close(rollout.logprobs, logprobs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rollout.entropy, entropy, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(value_head(rollout.hidden).squeeze(-1) * mask, values, atol=1e-5, rtol=1e-5)
    assert torch.all(rollout.logprobs[mask == 0] == 0) and torch.all(rollout.logprobs[mask == 1] < 0)


def test_evaluate_rollout_uses_the_kept_values_and_gets_what_a_forward_pass_gets(
    tiny_llama, special_tokens, one_torch_thread
):
    policy = build_policy(tiny_llama(), PPOConfig(lora_r=4))
    value_head = build_value_head(32)
    torch.nn.init.normal_(value_head.weight)
    cfg = PPOConfig(max_new_tokens=8, batch_size=4, mini_batch_size=4)
    torch.manual_seed(0)
    kept = generate_rollouts(policy, special_tokens, PROMPTS, cfg)
    plain = dataclasses.replace(kept, logprobs=None, entropy=None, hidden=None)  # as a generator that keeps nothing
    calls = []
    policy.register_forward_hook(lambda *_: calls.append(1))

    def score(queries, responses):
        return torch.tensor([float(len(r)) for r in responses])

    kwargs = dict(model=policy, value_head=value_head, score_fn=score, kl_coef=FixedKLController(0.1).value, cfg=cfg)
    from_kept = evaluate_rollout(rollout=kept, **kwargs)
    forwards_with_kept = len(calls)
    from_forward = evaluate_rollout(rollout=plain, **kwargs)

    assert forwards_with_kept == 1  # the reference pass alone
    assert len(calls) == forwards_with_kept + 2  # without them: the policy's pass as well
    for name in ("logprobs", "ref_logprobs", "values", "entropy", "advantages", "returns"):
        torch.testing.assert_close(getattr(from_kept, name), getattr(from_forward, name), atol=1e-5, rtol=1e-5)


def test_nucleus_keeps_the_smallest_set_reaching_top_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.05, 0.9, 0.03, 0.02]])
    kept = torch.isfinite(nucleus(probs.log(), 0.75))
    assert kept.tolist() == [[True, True, False, False], [False, True, False, False]]
    assert torch.equal(nucleus(probs.log(), 1.0), probs.log())
    assert torch.isfinite(nucleus(probs.log(), 0.01)).sum(dim=1).tolist() == [1, 1]  # the top token always stays


def test_columns_of_padding_in_every_row_change_nothing(tiny_llama, one_torch_thread):
    model, value_head = tiny_llama(), build_value_head(32)
    torch.nn.init.normal_(value_head.weight)
    ids = torch.tensor([[0, 5, 6, 7, 8, 1], [3, 4, 9, 10, 0, 0]])  # prompt of 3 (left-padded) + answer of 3
    mask = torch.tensor([[0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    padded_ids = torch.cat([torch.zeros(2, 2, dtype=torch.long), ids, torch.zeros(2, 2, dtype=torch.long)], 1)
    padded_mask = torch.cat([torch.zeros(2, 2, dtype=torch.long), mask, torch.zeros(2, 2, dtype=torch.long)], 1)
    with torch.no_grad():
        lp, v, ent = forward_logprobs_values(model, value_head, ids, mask, 3)
        plp, pv, pent = forward_logprobs_values(model, value_head, padded_ids, padded_mask, 5)
    for short, long in ((lp, plp), (v, pv), (ent, pent)):
        assert long.shape == (2, 5)
        torch.testing.assert_close(long[:, :3], short, atol=1e-5, rtol=1e-5)
        assert torch.all(long[:, 3:] == 0)
