import copy

import torch
from peft import PeftModel

from align.ppo import PPOConfig, PPOTrainer, build_policy, build_value_head

IDS = torch.tensor([[5, 9, 12, 3, 40, 7]])


def no_score(queries, responses):
    return torch.zeros(len(responses))


def test_save_writes_an_adapter_that_reloads_to_the_same_logits(
    tiny_llama, special_tokens, tmp_path, one_torch_thread
):
    cfg = PPOConfig(batch_size=4, mini_batch_size=2, total_episodes=4, lora_r=8)
    base = tiny_llama()
    untouched_base = copy.deepcopy(base)  # get_peft_model wraps `base` in place
    policy = build_policy(base, cfg)
    with torch.no_grad():  # a fresh LoRA (B = 0) would reload to base logits whatever was saved
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.3)
    trainer = PPOTrainer(model=policy, tokenizer=special_tokens, score_fn=no_score, cfg=cfg)
    with torch.no_grad():
        trainer.value_head.weight.normal_()

    directory = trainer.save(tmp_path / "adapter")

    assert {"adapter_config.json", "adapter_model.safetensors", "value_head.pt"} <= {
        p.name for p in directory.iterdir()
    }
    reloaded = PeftModel.from_pretrained(untouched_base, str(directory)).eval()
    with torch.no_grad():
        expected = policy(input_ids=IDS).logits
        torch.testing.assert_close(reloaded(input_ids=IDS).logits, expected)
        with reloaded.disable_adapter():
            assert not torch.allclose(reloaded(input_ids=IDS).logits, expected, atol=1e-3)
    head = build_value_head(32, path=directory / "value_head.pt")
    torch.testing.assert_close(head.weight, trainer.value_head.weight)
