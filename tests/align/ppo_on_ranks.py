"""A few PPO steps on the tiny model, on as many processes as the launcher started:

    python -m tests.align.ppo_on_ranks MODE OUT_DIR                 one process
    accelerate launch ... -m tests.align.ppo_on_ranks MODE OUT_DIR  one per rank

Each rank saves what the tests compare to OUT_DIR/rank<r>.pt: its LoRA and value-head weights (before
and after), its per-step stats and the prompts it rolled out. MODE:

    sampled  answers sampled by generate, as in training
    fixed    each prompt's answer is fixed (no EOS, all the same length), whatever the weights, so a
             run on two ranks can be compared number for number with a run on one
    fail     rank 1 raises in its second step: every rank must stop, none may hang
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from align.distributed import start_ranks
from align.ppo import PPOConfig, PPOTrainer, build_policy
from align.rollout import Rollout, generate_rollouts, left_pad
from tests.align.tiny import SPECIAL_TOKENS, tiny_llama

PROMPTS = [[5, 6, 7], [8, 9], [10, 11, 12, 13], [14], [15, 16], [17, 18, 19], [20], [21, 22]]
ANSWER_LENGTH = 4
RANK_TIMEOUT_S = 60  # a rank left waiting gives up after this; the tests expect far quicker endings
CONFIG = dict(batch_size=4, epochs=2, max_new_tokens=ANSWER_LENGTH, total_episodes=12, lora_r=4,
              learning_rate=1e-2,  # a big rate so three steps visibly move the tiny model
              # No answer here ends, so the penalty lowers every score alike. Kept at the old default: with 0
              # one LoRA weight of 128 differed by 1.04e-6 between the layouts (float noise just past atol 1e-6).
              missing_eos_penalty=1.0)
# One minibatch per epoch for "fixed": then two ranks' averaged gradients are exactly the one-process
# gradient over the whole batch (equal answer lengths make every token weigh the same in both).
MINI_BATCH = {"sampled": 2, "fixed": 4, "fail": 2}


def low_tokens(queries, responses):
    """Score: the fraction of answer tokens below 32."""
    return torch.tensor([sum(t < 32 for t in r) / len(r) for r in responses])


def fixed_answers(model, tokenizer, prompt_ids, cfg) -> Rollout:
    """A rollout whose answers depend only on the prompt (never EOS or padding)."""
    device = next(model.parameters()).device
    query_ids, query_mask = left_pad(prompt_ids, tokenizer.pad_token_id, device)
    answers = torch.tensor([[2 + (p[0] * (k + 3)) % 62 for k in range(ANSWER_LENGTH)] for p in prompt_ids],
                           device=device)  # [B, T]
    return Rollout(query_ids=query_ids, query_mask=query_mask, response_ids=answers,
                   response_mask=torch.ones_like(answers),
                   ended_with_eos=torch.zeros(len(prompt_ids), dtype=torch.bool, device=device))


def failing_on_rank_1(rank: int):
    calls = []

    def score(queries, responses):
        calls.append(1)
        if rank == 1 and len(calls) == 2:
            raise RuntimeError("rank 1 fails on purpose in its second step")
        return low_tokens(queries, responses)

    return score


def main(mode: str, out_dir: Path) -> None:
    torch.set_num_threads(1)
    ranks = start_ranks(device="cpu", timeout_s=RANK_TIMEOUT_S)
    cfg = PPOConfig(mini_batch_size=MINI_BATCH[mode], **CONFIG)
    policy = build_policy(tiny_llama(), cfg)
    lora_before = {n: p.detach().clone() for n, p in policy.named_parameters() if "lora_" in n}
    seen: list[list[list[int]]] = []
    sample = fixed_answers if mode == "fixed" else generate_rollouts

    def recording(model, tokenizer, prompt_ids, cfg):
        seen.append(prompt_ids)
        return sample(model, tokenizer, prompt_ids, cfg)

    score = failing_on_rank_1(ranks.rank) if mode == "fail" else low_tokens
    trainer = PPOTrainer(model=policy, tokenizer=SPECIAL_TOKENS, score_fn=score, cfg=cfg, generator=recording,
                         ranks=ranks)
    stats = trainer.train(PROMPTS)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"lora_before": lora_before,
                "lora": {n: p.detach().clone() for n, p in policy.named_parameters() if "lora_" in n},
                "value_head": trainer.value_head.state_dict(), "stats": stats, "seen": seen,
                "world_size": ranks.world_size},
               out_dir / f"rank{ranks.rank}.pt")


def load(out_dir: Path, rank: int) -> dict:
    return torch.load(out_dir / f"rank{rank}.pt", weights_only=False)


def steady(stats: list[dict[str, float]]) -> list[dict[str, float]]:
    """Per-step stats without what is each rank's own: wall times and decoded_tokens."""
    return [{k: v for k, v in s.items() if not k.endswith("_s") and k != "decoded_tokens"} for s in stats]


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
