import copy

import torch

from align.ppo import PPOConfig, build_policy, build_value_head
from align.rollout import forward_logprobs_values, reference_logprobs

IDS = torch.tensor([[5, 9, 12, 3, 40, 7], [0, 0, 8, 3, 21, 33]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]])
START = 3  # the last three tokens are the answer


def test_reference_is_the_base_model_even_when_continuing_from_an_adapter(tiny_llama, tmp_path, one_torch_thread):
    cfg = PPOConfig(lora_r=8)
    base = tiny_llama()
    plain_base = copy.deepcopy(base)
    first = build_policy(copy.deepcopy(base), cfg)
    with torch.no_grad():
        for name, param in first.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.3)
    first.save_pretrained(str(tmp_path))

    policy = build_policy(base, cfg, adapter_dir=tmp_path)

    assert any(p.requires_grad for n, p in policy.named_parameters() if "lora_" in n)
    with torch.no_grad():
        policy_logprobs, _, _ = forward_logprobs_values(policy, build_value_head(32), IDS, MASK, START)
        from_plain_base, _, _ = forward_logprobs_values(plain_base, build_value_head(32), IDS, MASK, START)
    reference = reference_logprobs(policy, IDS, MASK, START)
    torch.testing.assert_close(reference, from_plain_base)
    assert not torch.allclose(policy_logprobs, reference, atol=1e-3)
