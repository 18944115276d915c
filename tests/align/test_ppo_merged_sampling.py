"""Rollouts are sampled with each LoRA merged into a copy of its layer's weight (PPOConfig.merged_sampling):
the same tokens and log-probs as sampling through PEFT's layers, and the model is exactly as before after."""

import dataclasses

import torch

from align.packed import merged_lora_linears, packed_frozen_linears
from align.ppo import PPOConfig, build_policy
from align.rollout import generate_rollouts

PROMPTS = [[5, 6, 7, 8, 9], [3, 4], [10], [11, 12, 13]]
CFG = PPOConfig(max_new_tokens=10, batch_size=4, mini_batch_size=4, lora_r=4)


def trained_policy(tiny_llama):
    policy = build_policy(tiny_llama(), CFG)
    with torch.no_grad():  # B != 0, as after training: the adapter changes the outputs
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.3)
    return policy


def sample(policy, special_tokens, *, merged):
    torch.manual_seed(0)
    return generate_rollouts(policy, special_tokens, PROMPTS, dataclasses.replace(CFG, merged_sampling=merged))


def test_merged_sampling_draws_what_the_adapter_layers_draw(tiny_llama, special_tokens, one_torch_thread):
    policy = trained_policy(tiny_llama)
    for packed in (False, True):
        with packed_frozen_linears(policy, enabled=packed):
            plain, merged = sample(policy, special_tokens, merged=False), sample(policy, special_tokens, merged=True)

        assert torch.equal(merged.response_ids, plain.response_ids)
        torch.testing.assert_close(merged.logprobs, plain.logprobs, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(merged.hidden, plain.hidden, atol=1e-5, rtol=1e-5)


def test_the_layers_and_base_weights_are_exactly_as_before(tiny_llama, one_torch_thread):
    policy = trained_policy(tiny_llama)
    weights = {name: p.clone() for name, p in policy.named_parameters()}
    ids = torch.tensor([PROMPTS[0]])
    before = policy(input_ids=ids).logits

    with merged_lora_linears(policy) as merged:
        assert merged == 2 * 4  # q/k/v/o of both blocks
        torch.testing.assert_close(policy(input_ids=ids).logits, before, atol=1e-5, rtol=1e-5)

    assert all(torch.equal(p, weights[name]) for name, p in policy.named_parameters())
    assert torch.equal(policy(input_ids=ids).logits, before)


def test_nothing_is_merged_while_the_adapter_is_off(tiny_llama, special_tokens, one_torch_thread):
    policy = trained_policy(tiny_llama)
    with policy.disable_adapter():
        with merged_lora_linears(policy) as merged:
            assert merged == 0
        reference = sample(policy, special_tokens, merged=True)
    base_model = tiny_llama()  # the same weights the policy was built on
    torch.manual_seed(0)
    base = generate_rollouts(base_model, special_tokens, PROMPTS, CFG)

    assert torch.equal(reference.response_ids, base.response_ids)
