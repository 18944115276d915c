"""Tokens per second of PPO's rollout sampling (align.rollout.generate_rollouts) at several batch sizes.

    python bench/rollout_speed.py [--batches 8,16,32] [--max-new-tokens 64] [--variants lora,merged,base]
                                  [--repeats 2] [--lora-modules all|attention] [--out ...]

The policy is the default model with a rank-16 LoRA (on all seven linears, as a round that continues
from its SFT adapter, or on PPOConfig's default q/k/v/o; B matrices made non-zero, as after training),
packed frozen weights on, the threads `python -m align` uses. Prompts: HH-harmless train conversations
of at most PPOConfig.max_prompt_tokens tokens, chat template applied, as a round's PPO gets them. Every
variant samples the same prompts in the same process, one after the other, so they see the same load; `uptime` is recorded beside each row, and the
process's CPU time per decoded token too, which moves far less with other jobs than wall time does.
Variants: `lora` = sampling through PEFT's layers (before PPOConfig.merged_sampling); `merged` = the adapter merged into the weights for
sampling (PPOConfig.merged_sampling); `base` = the adapter switched off (the floor).
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import HH_TRAIN, machine_info, uptime, write_results  # noqa: E402
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `python -m align` sets it for a round


def round_prompts(path: Path, tokenizer, n: int, max_tokens: int) -> list[list[int]]:
    """The first n HH conversations of at most max_tokens tokens, encoded as PPO encodes a round's prompts
    (PPOConfig.max_prompt_tokens keeps the same ones out of a round)."""
    from align.rollout import encode_prompts

    prompts = []
    with gzip.open(path, "rt") as f:
        for line in f:
            ids = encode_prompts([json.loads(line)["prompt"]], tokenizer)[0]
            if len(ids) <= max_tokens:
                prompts.append(ids)
            if len(prompts) == n:
                return prompts
    return prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="8,16,32")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--lora-modules", default="all", help="'all' (as a round continuing from an SFT adapter) "
                                                              "or 'attention' (PPOConfig's default q/k/v/o)")
    parser.add_argument("--variants", default="lora,merged,base")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: one per core)")
    parser.add_argument("--repeats", type=int, default=1, help="passes over every batch x variant, interleaved")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "rollout_speed.json"))
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from align.packed import packed_frozen_linears
    from align.ppo import PPOConfig, build_policy
    from align.rollout import generate_rollouts

    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = REPO / "data" / "models" / "SmolLM2-135M-Instruct"
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    from align.config import LLAMA_LINEAR_MODULES

    cfg = PPOConfig(max_new_tokens=args.max_new_tokens)
    if args.lora_modules == "all":
        cfg = dataclasses.replace(cfg, lora_target_modules=list(LLAMA_LINEAR_MODULES))
    policy = build_policy(base, cfg).eval()
    with torch.no_grad():  # a trained adapter: B != 0, so the LoRA branch really runs
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.01)
    batches = [int(b) for b in args.batches.split(",")]
    prompts = round_prompts(HH_TRAIN, tokenizer,
                            max(batches), cfg.max_prompt_tokens)
    rows, before = [], uptime()
    with packed_frozen_linears(policy):
        for batch in [b for _ in range(args.repeats) for b in batches]:
            for variant in args.variants.split(","):
                run_cfg = dataclasses.replace(cfg, batch_size=batch, mini_batch_size=batch,
                                              merged_sampling=variant == "merged")
                torch.manual_seed(0)
                started, cpu_started = time.perf_counter(), time.process_time()
                if variant == "base":
                    with policy.disable_adapter():
                        rollout = generate_rollouts(policy, tokenizer, prompts[:batch], run_cfg)
                else:
                    rollout = generate_rollouts(policy, tokenizer, prompts[:batch], run_cfg)
                seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
                steps = rollout.response_ids.shape[1]
                answer = int(rollout.response_mask.sum())
                row = {"batch": batch, "variant": variant, "seconds": round(seconds, 2), "decode_steps": steps,
                       "decoded_tok_s": round(batch * steps / seconds, 1), "answer_tok_s": round(answer / seconds, 1),
                       "ms_per_step": round(1000 * seconds / steps, 1),
                       "cpu_ms_per_decoded_token": round(1000 * cpu_seconds / (batch * steps), 2),
                       "uptime": uptime()}
                rows.append(row)
                print(json.dumps(row), flush=True)
    result = {"machine": {**machine_info("torch"), "threads": torch.get_num_threads()},
              "uptime_before": before, "uptime_after": uptime(), "max_new_tokens": args.max_new_tokens,
              "lora_modules": cfg.lora_target_modules,
              "rows": rows}
    write_results(result, args.out, indent=2)


if __name__ == "__main__":
    main()
