"""Tokens per second of PPO's rollout sampling (align.ppo.generate_rollouts) at several batch sizes.

    python bench/rollout_speed.py [--batches 8,16,32,64] [--max-new-tokens 48] [--variants lora,merged,base]
                                  [--out bench/results/rollout_speed.json]

The policy is the default model with PPOConfig's default LoRA (its B matrices made non-zero, as after
training), packed frozen weights on, the threads `python -m align` uses. Prompts: first user turns of
the HH-harmless train pairs, chat template applied. Every variant samples the same prompts in the same
process, one after the other, so they see the same load; `uptime` is recorded before and after.
Variants: `lora` = the adapter as PPO samples today; `merged` = the adapter merged into the weights for
sampling (PPOConfig.merged_sampling); `base` = the adapter switched off (the floor).
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `python -m align` sets it for a round


def first_user_turns(path: Path, n: int) -> list[list[dict]]:
    prompts = []
    with gzip.open(path, "rt") as f:
        for line in f:
            turn = json.loads(line)["prompt"][0]
            if turn["role"] == "user" and len(turn["content"]) < 300:
                prompts.append([turn])
            if len(prompts) == n:
                break
    return prompts


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="8,16,32,64")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--variants", default="lora,merged,base")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: one per core)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "rollout_speed.json"))
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from align.packed import packed_frozen_linears
    from align.ppo import PPOConfig, build_policy, encode_prompts, generate_rollouts

    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = REPO / "data" / "models" / "SmolLM2-135M-Instruct"
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    cfg = PPOConfig(max_new_tokens=args.max_new_tokens)
    policy = build_policy(base, cfg).eval()
    with torch.no_grad():  # a trained adapter: B != 0, so the LoRA branch really runs
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.01)
    batches = [int(b) for b in args.batches.split(",")]
    prompts = encode_prompts(first_user_turns(REPO.parent / "shared" / "data" / "hh-harmless-train.jsonl.gz",
                                              max(batches)), tokenizer)
    rows, before = [], uptime()
    with packed_frozen_linears(policy):
        for batch in batches:
            for variant in args.variants.split(","):
                run_cfg = dataclasses.replace(cfg, batch_size=batch, mini_batch_size=batch,
                                              merged_sampling=variant == "merged")
                torch.manual_seed(0)
                started = time.perf_counter()
                if variant == "base":
                    with policy.disable_adapter():
                        rollout = generate_rollouts(policy, tokenizer, prompts[:batch], run_cfg)
                else:
                    rollout = generate_rollouts(policy, tokenizer, prompts[:batch], run_cfg)
                seconds = time.perf_counter() - started
                steps = rollout.response_ids.shape[1]
                answer = int(rollout.response_mask.sum())
                row = {"batch": batch, "variant": variant, "seconds": round(seconds, 2), "decode_steps": steps,
                       "decoded_tok_s": round(batch * steps / seconds, 1), "answer_tok_s": round(answer / seconds, 1),
                       "ms_per_step": round(1000 * seconds / steps, 1), "uptime": uptime()}
                rows.append(row)
                print(json.dumps(row), flush=True)
    result = {"machine": f"{os.cpu_count()} cores, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
                         f"torch {torch.__version__}, threads {torch.get_num_threads()}",
              "uptime_before": before, "uptime_after": uptime(), "max_new_tokens": args.max_new_tokens,
              "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
