import torch
from transformers import GenerationConfig

from align.ppo import build_value_head
from align.rollout import forward_logprobs_values, left_pad, response_mask_until_eos

PROMPTS = [[5, 6, 7, 8, 9], [3, 4], [10]]  # different lengths: left padding and positions matter


def test_training_logprobs_match_what_generate_sampled_from(tiny_llama, special_tokens, one_torch_thread):
    model = tiny_llama()
    query_ids, query_mask = left_pad(PROMPTS, special_tokens.pad_token_id, torch.device("cpu"))
    torch.manual_seed(0)
    out = model.generate(
        input_ids=query_ids,
        attention_mask=query_mask,
        generation_config=GenerationConfig(
            do_sample=True, top_k=0, max_new_tokens=6, pad_token_id=0, eos_token_id=1,
            return_dict_in_generate=True, output_logits=True,
        ),
    )
    response = out.sequences[:, query_ids.shape[1] :]  # [B, T]
    generate_logits = torch.stack(out.logits, dim=1)  # [B, T, V]
    generate_logprobs = torch.log_softmax(generate_logits, -1).gather(-1, response.unsqueeze(-1)).squeeze(-1)
    mask, _ = response_mask_until_eos(response, special_tokens.eos_token_id)

    with torch.no_grad():
        logprobs, values, entropy = forward_logprobs_values(
            model, build_value_head(32), torch.cat([query_ids, response], 1), torch.cat([query_mask, mask], 1),
            query_ids.shape[1],
        )

    torch.testing.assert_close(logprobs, generate_logprobs * mask)
    assert values.shape == entropy.shape == response.shape
    assert torch.all(entropy[mask == 1] > 0) and torch.all(entropy[mask == 0] == 0)
