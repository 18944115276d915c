"""PPO on a GPU, launched as a round is (`accelerate launch`): does every part of the PPO stage run on the
rank's device, do the weights move, and how long does a step take?

    accelerate launch --num_processes 1 -m bench.ppo_gpu --tokenizer DIR     # one GPU
    accelerate launch --num_processes N -m bench.ppo_gpu --tokenizer DIR     # N GPUs: also checks the ranks agree

The policy is a Llama shaped like SmolLM2-135M-Instruct (its config.json, spelled out below) with random
weights, so nothing is downloaded; the reward model is the same architecture cut to 8 blocks as a
sequence classifier, random too (scores are meaningless, the work is a reward model's). DIR holds
SmolLM2's tokenizer.json, tokenizer_config.json and chat_template.jinja: prompts then go through the chat
template, as in a round. Only torch, transformers, peft and accelerate are imported (no trl, datasets or
app packages). Prints one PASS/FAIL line per check, the timings, and exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from types import SimpleNamespace

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

from align.distributed import start_ranks
from align.evaluate import EvalSettings, evaluate_model
from align.ppo import PPOConfig, PPOTrainer, build_policy
from align.rollout import encode_prompts

QUESTIONS = ["How do I boil an egg?", "What is a prime number?", "Write a haiku about rain.",
             "Why is the sky blue?", "Name three rivers in Europe.", "How do magnets work?",
             "What should I pack for a hike?", "Explain recursion briefly.", "What is 17 times 3?",
             "Give me a tip for learning a language.", "What is photosynthesis?", "Suggest a name for a cat.",
             "How far away is the Moon?", "What does a compiler do?", "Tell me a fun fact about owls.",
             "How do I make tea?"]


def smollm2_135m(**overrides) -> LlamaConfig:
    """SmolLM2-135M-Instruct's architecture (its config.json)."""
    settings = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, head_dim=64, max_position_embeddings=8192,
                    rope_parameters={"rope_theta": 100000.0, "rope_type": "default"}, rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=1,
                    eos_token_id=2, pad_token_id=2)
    return LlamaConfig(**{**settings, **overrides})


def reward_scorer(device: torch.device):
    """(prompts, answers) -> scores from an 8-block random sequence classifier, read at the last real token
    of right-padded ids, as align.reward.RewardScorer reads its model."""
    torch.manual_seed(1)
    model = LlamaForSequenceClassification(smollm2_135m(num_hidden_layers=8, num_labels=1)).to(device).eval()

    @torch.no_grad()
    def score_ids(queries: list[list[int]], responses: list[list[int]]) -> torch.Tensor:
        sequences = [q + r for q, r in zip(queries, responses)]
        width = max(len(s) for s in sequences)
        ids = torch.tensor([s + [2] * (width - len(s)) for s in sequences], device=device)  # [B, L]
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences], device=device)
        return model(input_ids=ids, attention_mask=mask).logits[:, 0].float().cpu()  # [B]

    return score_ids


def load_tokenizer(path: str):
    """SmolLM2's tokenizer, or None (prompts become token ids, no evaluation) if this transformers cannot
    read the files: the PPO checks do not need it."""
    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as e:  # noqa: BLE001 - any failure here only narrows the check, and is printed
        print(f"SKIP  evaluation and chat prompts: the tokenizer in {path} did not load ({type(e).__name__}: {e})")
        return None


def checker(prefix: str, results: list[bool]):
    """check(name, ok, detail): print one PASS/FAIL line and remember the outcome."""

    def check(name: str, ok: bool, detail: str = "") -> None:
        results.append(bool(ok))
        print(f"{prefix}{'PASS' if ok else 'FAIL'}  {name}{': ' + detail if detail else ''}", flush=True)

    return check


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", default="", help="Directory with SmolLM2's tokenizer files (empty: token ids).")
    parser.add_argument("--steps", type=int, default=4, help="PPO steps to time.")
    parser.add_argument("--batch-size", type=int, default=16, help="Episodes per PPO step (all ranks together).")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="Answer length; random weights rarely stop.")
    parser.add_argument("--layers", type=int, default=30, help="Policy blocks (30 as SmolLM2-135M; fewer for a CPU smoke run).")
    args = parser.parse_args()
    results: list[bool] = []
    t0 = time.perf_counter()
    ranks = start_ranks(device="auto", timeout_s=600)
    check = checker(f"[rank {ranks.rank}] " if ranks.distributed else "", results)
    if ranks.is_main:
        print(f"torch {torch.__version__}, {ranks}, "
              f"{torch.cuda.get_device_name(ranks.device) if ranks.device.type == 'cuda' else 'no GPU'}", flush=True)
    check("the rank's device is a GPU", ranks.device.type == "cuda", str(ranks.device))

    tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else None
    if tokenizer is not None:
        prompts = [[{"role": "user", "content": q}] for q in QUESTIONS]
    else:
        generator = torch.Generator().manual_seed(0)
        prompts = [torch.randint(3, 49152, (12,), generator=generator).tolist() for _ in QUESTIONS]
    special = tokenizer or SimpleNamespace(pad_token_id=2, eos_token_id=2)  # SmolLM2's <|im_end|>

    torch.manual_seed(0)
    base = LlamaForCausalLM(smollm2_135m(num_hidden_layers=args.layers)).to(ranks.device)
    cfg = PPOConfig(batch_size=args.batch_size, mini_batch_size=args.batch_size // 2,
                    total_episodes=args.batch_size * args.steps, max_new_tokens=args.max_new_tokens,
                    learning_rate=1e-4)
    policy = build_policy(base, cfg)
    base_before = {n: p.detach().clone() for n, p in policy.named_parameters() if "lora_" not in n and "layers.0." in n}
    lora_before = {n: p.detach().clone() for n, p in policy.named_parameters() if "lora_B" in n}
    score = reward_scorer(ranks.device)
    trainer = PPOTrainer(model=policy, tokenizer=special, score_fn=score, cfg=cfg, ranks=ranks)
    build_s = time.perf_counter() - t0

    on_device = {p.device for p in policy.parameters()} | {p.device for p in trainer.value_head.parameters()}
    check("policy, LoRA and value head on the rank's device", all(d.type == ranks.device.type for d in on_device),
          ", ".join(sorted(map(str, on_device))))
    if ranks.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t1 = time.perf_counter()
    stats = trainer.train(prompts)
    train_s = time.perf_counter() - t1

    after = dict(policy.named_parameters())
    check("LoRA weights moved", all(not torch.equal(after[n], p) for n, p in lora_before.items()))
    check("base weights did not", all(torch.equal(after[n], p) for n, p in base_before.items()))
    check("every step's stats are finite", all(math.isfinite(v) for s in stats for v in s.values()))
    if ranks.distributed:
        checksum = torch.stack([p.detach().double().sum() for n, p in after.items() if "lora_" in n]).sum()
        sums = [torch.zeros_like(checksum) for _ in range(ranks.world_size)]
        torch.distributed.all_gather(sums, checksum)
        check("every rank holds the same LoRA weights", all(torch.equal(s, sums[0]) for s in sums))
        # One verdict, from rank 0: a rank that exits non-zero makes the launcher stop the others at once.
        verdicts = [None] * ranks.world_size
        torch.distributed.all_gather_object(verdicts, all(results))
        if not ranks.is_main:
            return 0
        check("every rank passed its checks", all(verdicts))

    if tokenizer is not None:  # evaluation decodes answers and runs on rank 0 alone, as in a round
        t2 = time.perf_counter()
        settings = EvalSettings(max_new_tokens=args.max_new_tokens, temperature=1.0, batch_size=8, seed=0, samples=1)

        def score_texts(chats, answers):
            return score(encode_prompts(chats, tokenizer), [tokenizer(a)["input_ids"] or [2] for a in answers]).tolist()

        evaluation = evaluate_model(policy, tokenizer, score_texts, prompts[:8], settings, adapter=policy.active_adapter)
        eval_s = time.perf_counter() - t2
        check("evaluation on the device gives finite metrics", evaluation["finite"],
              f"reward {evaluation['mean_reward']:.3f}, KL {evaluation['kl_to_base']:.3f}, {eval_s:.1f} s")

    steps = [f"{s['rollout_s']:.2f}/{s['score_s']:.2f}/{s['update_s']:.2f}" for s in stats]
    tokens = sum(s["decoded_tokens"] for s in stats)
    peak = torch.cuda.max_memory_allocated(ranks.device) / 2**30 if ranks.device.type == "cuda" else 0.0
    print(f"build {build_s:.1f} s; {len(stats)} PPO steps of {args.batch_size} episodes in {train_s:.1f} s "
          f"({train_s / len(stats):.2f} s/step); rollout/score/update s per step: {' '.join(steps)}; "
          f"{tokens / sum(s['rollout_s'] for s in stats):.0f} sampled tokens/s per rank; peak GPU memory "
          f"{peak:.2f} GiB", flush=True)
    print("GPU CHECK " + ("PASSED" if all(results) else "FAILED"), flush=True)
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
