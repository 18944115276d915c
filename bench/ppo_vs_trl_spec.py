"""What the parent and both sides of `bench/ppo_vs_trl.py` share: the benchmark's config, and the spec (the
prompt token ids, in the order both sides answer them) that the parent builds and each side's process reads."""

from __future__ import annotations

import dataclasses
import gzip
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TRL_VERSION = "1.12.0"  # the last release with trl.experimental.ppo


@dataclass
class BenchConfig:
    """One benchmark run: the PPO workload both sides get, how often each side runs, and where results go."""

    model: str = field(
        default=str(ROOT / "data" / "models" / "SmolLM2-135M-Instruct"),  # the app's default model
        metadata={"help": "Policy checkpoint; also the reward and (TRL) value model, as sequence classifiers."},
    )
    prompts_file: str = field(
        default="/work/shared/data/hh-harmless-train.jsonl.gz",  # real user openings, not synthetic text
        metadata={"help": "JSONL(.gz) with a conversational 'prompt' list; its first user turns are the prompts."},
    )
    n_prompts: int = field(
        default=64,  # one pass over them at the default 64 episodes: every prompt is answered once per side
        metadata={"help": "Distinct first user turns to take, in file order; must be >= total_episodes."},
    )
    max_prompt_tokens: int = field(
        default=128,  # keeps prefill small next to 48 sampled tokens; few HH openings are longer
        metadata={"help": "Longest templated prompt in tokens; longer user turns lose their end."},
    )
    total_episodes: int = field(
        default=64,  # 8 PPO steps: TRL took ~150 s for this on 2 cores
        metadata={"help": "Episodes (prompt + sampled answer) per run, on each side."},
    )
    batch_size: int = field(
        default=8,  # episodes per PPO step, our default
        metadata={"help": "Episodes per rollout batch (TRL: per_device_train_batch_size)."},
    )
    mini_batch_size: int = field(
        default=4,  # two gradient steps per epoch (TRL: num_mini_batches = batch_size / mini_batch_size)
        metadata={"help": "Episodes per gradient step; must divide batch_size."},
    )
    ppo_epochs: int = field(
        default=2,  # our default; TRL's own default is 4
        metadata={"help": "PPO passes over each rollout batch."},
    )
    max_new_tokens: int = field(
        default=48,  # TRL: response_length; both stop earlier at EOS
        metadata={"help": "Longest sampled answer in tokens."},
    )
    temperature: float = field(
        default=1.0,  # sample the policy itself; TRL's default would be 0.7
        metadata={"help": "Sampling temperature on both sides (log-probs use the same temperature)."},
    )
    learning_rate: float = field(
        default=3e-5,  # our LoRA default; 3e-6 (TRL's full-finetune default) barely moves a LoRA in 8 steps
        metadata={"help": "AdamW learning rate, constant on both sides."},
    )
    kl_coef: float = field(
        default=0.05,  # TRL's fixed default and our initial beta; ours is told not to adapt it
        metadata={"help": "Fixed KL penalty coefficient on both sides."},
    )
    missing_eos_penalty: float = field(
        default=1.0,  # our default; TRL applies none unless told, so it is told the same
        metadata={"help": "Subtracted from the training reward of answers without EOS, on both sides."},
    )
    lora_r: int = field(
        default=16,  # our default
        metadata={"help": "LoRA rank on both sides."},
    )
    lora_alpha: int = field(
        default=32,  # alpha = 2r, our default
        metadata={"help": "LoRA alpha on both sides."},
    )
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],  # attention only, our default
        metadata={"help": "Modules that get LoRA adapters on both sides."},
    )
    seed: int = field(
        default=0,  # one seed for prompt order, LoRA init, reward head and sampling
        metadata={"help": "Seed for both sides; the reward model's score head is drawn from it too."},
    )
    threads: int = field(
        default=2,  # the machine's 2 cores; both sides get the same
        metadata={"help": "torch.set_num_threads in each side's process."},
    )
    omp_wait_policy: str = field(
        default="PASSIVE",  # measured here under load ~7 on 2 cores: one step of ours took 260 s with
        # OpenMP's default spinning and 68 s with PASSIVE (82 s with 1 thread); idle threads that spin steal
        # the time slices the working thread needs once other jobs share the cores
        metadata={"help": "OMP_WAIT_POLICY for both sides' processes; an empty string leaves it unset."},
    )
    repeats: int = field(
        default=1,  # one run per side keeps the default under ~12 minutes; raise on a quiet machine
        metadata={"help": "Runs per side, alternating ours/TRL; medians over them are reported."},
    )
    trl_dir: str = field(
        default="/tmp/trl112",  # outside the venv: nothing else sees this TRL
        metadata={"help": f"Where TRL {TRL_VERSION} is installed (pip --target); installed there if missing."},
    )
    out: str = field(
        default=str(ROOT / "bench" / "results" / "ppo_vs_trl.json"),
        metadata={"help": "Where to write the results as JSON (folders are created)."},
    )
    run_timeout_s: float = field(
        default=1800.0,  # one side's run, loading included; the default run needs ~3 minutes on a quiet machine
        metadata={"help": "Seconds one side's subprocess may take before the benchmark fails."},
    )
    quick: bool = field(
        default=False,
        metadata={"help": "Smoke run: 16 episodes per side, results in ppo_vs_trl_quick.json (each only where "
                          "that option is left at its default)."},
    )


# ---------------------------------------------------------------------------- shared inputs


def load_first_user_turns(path: str, n: int) -> list[str]:
    """The first `n` distinct first user turns of the conversations in `path`, in file order."""
    opener = gzip.open if path.endswith(".gz") else open
    turns: list[str] = []
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            messages = json.loads(line)["prompt"]
            text = next((m["content"].strip() for m in messages if m["role"] == "user"), "")
            if text and text not in turns:
                turns.append(text)
                if len(turns) == n:
                    return turns
    raise ValueError(f"{path} has only {len(turns)} distinct first user turns; {n} wanted.")


def pad_token(tokenizer: Any) -> tuple[str, int]:
    """A pad token other than EOS. SmolLM2 pads with <|im_end|>, its EOS; TRL finds answer ends and attention
    masks by comparing with the pad id, so it would cut every answer before its EOS and mask the <|im_end|>
    tokens inside the chat-templated prompt. <|endoftext|> (the unk token) never occurs in these prompts."""
    token = tokenizer.unk_token or "<|endoftext|>"
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.eos_token_id:
        raise ValueError(f"No usable pad token distinct from EOS in {tokenizer.name_or_path}.")
    return token, token_id


def encode_prompt(tokenizer: Any, text: str, max_tokens: int) -> tuple[list[int], bool]:
    """Chat-templated prompt ids (with the assistant header), at most `max_tokens` long; cut at the user
    text's end, never the template's, so every prompt still ends by asking for an answer."""
    from align.rollout import encode_prompts  # the encoding our trainer applies to chat prompts

    ids = encode_prompts([[{"role": "user", "content": text}]], tokenizer)[0]
    truncated = False
    while len(ids) > max_tokens:
        content = tokenizer(text, add_special_tokens=False)["input_ids"]
        text = tokenizer.decode(content[: len(content) - (len(ids) - max_tokens)])
        ids = encode_prompts([[{"role": "user", "content": text}]], tokenizer)[0]
        truncated = True
    return ids, truncated


def our_prompt_order(n_prompts: int, total_episodes: int, seed: int) -> list[int]:
    """Indices of the prompts our trainer answers, in order. `PPOTrainer.train` draws its first pass with
    randperm from a generator seeded with cfg.seed before anything else draws from it (`prompt_batches`);
    the TRL side is handed this same sequence. Each side also records what it really got, to check."""
    import torch

    order = torch.randperm(n_prompts, generator=torch.Generator().manual_seed(seed)).tolist()
    return order[:total_episodes]


def build_spec(cfg: BenchConfig) -> dict:
    """Everything a side's subprocess needs: the config and the prompt token ids, in both sides' order."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    token, token_id = pad_token(tokenizer)
    texts = load_first_user_turns(cfg.prompts_file, cfg.n_prompts)
    encoded = [encode_prompt(tokenizer, text, cfg.max_prompt_tokens) for text in texts]
    prompt_ids = [ids for ids, _ in encoded]
    return {
        "config": dataclasses.asdict(cfg),
        "pad_token": token,
        "pad_token_id": token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "prompt_ids": prompt_ids,
        "order": our_prompt_order(len(prompt_ids), cfg.total_episodes, cfg.seed),
        "prompts_truncated": sum(truncated for _, truncated in encoded),
        "prompt_tokens_mean": statistics.mean(len(ids) for ids in prompt_ids),
    }


def expected_batches(spec: dict) -> list[list[list[int]]]:
    """The prompt batches, as token ids, that both sides should answer step by step."""
    ordered = [spec["prompt_ids"][i] for i in spec["order"]]
    size = spec["config"]["batch_size"]
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]
