"""PPO benchmark: our `align.ppo.PPOTrainer` against TRL 1.12.0's `trl.experimental.ppo.PPOTrainer`.

    .venv/bin/python bench/ppo_vs_trl.py            # 64 episodes per side, ~8-10 minutes on 2 idle cores
    .venv/bin/python bench/ppo_vs_trl.py --quick    # smoke run: 16 episodes per side
    .venv/bin/python bench/ppo_vs_trl.py --repeats 3

TRL 1.12.0 is the last TRL release with PPO; the venv has TRL 1.16, which has none. The benchmark installs
1.12.0 on first use, outside the venv and without its dependencies (it runs on the venv's torch,
transformers 5, peft, accelerate and datasets, which it imports unchanged):

    .venv/bin/pip install --no-deps --target /tmp/trl112 trl==1.12.0

Each run is a fresh subprocess: the TRL side with PYTHONPATH=/tmp/trl112, so its `trl` shadows the venv's
only there; our side with the normal path. Both get the same work, spelled out in `trl_args` and
`our_ppo_config`: SmolLM2-135M-Instruct in float32, LoRA r16/alpha 32 on q/k/v/o, the same prompt batches
in the same order, batch 8, 2 PPO epochs x 2 minibatches of 4, sampling at temperature 1.0 without top-k or
top-p, answers of at most 48 tokens that stop at EOS (TRL: stop_token="eos"), a fixed KL coefficient, the
same missing-EOS penalty and the same learning rate (constant on both sides). Both are scored by one reward
model: SmolLM2 as a sequence classifier whose score head is drawn from a fixed seed, read at the last real
token of prompt + answer, which is exactly what TRL's `get_reward` does.

Design differences that stay, because they are what is being compared:
- critic: TRL trains a separate value model (a second full 135M network, all weights trainable, initialised
  like the reward model, as TRL's examples do); ours puts a linear value head on the policy's hidden states.
- log-probs at rollout time: both take them from the sampling pass (TRL from `generate`'s scores, ours
  from its own sampling loop, which also keeps the hidden states its value head reads); TRL then runs
  its value model over the batch.
- ours runs the frozen base weights on the CPU packed once for oneDNN (`PPOConfig.packed_weights`,
  align/packed.py); TRL's model is used as transformers builds it.
- gradient clipping: ours clips to norm 1.0; TRL 1.12's PPO loop never clips.

Only the training loop is timed (`train()` on both sides: wall time and the process's CPU time); loading
the models and building the trainers are not. The runs alternate (ours, TRL, TRL, ours, ...) so that other
jobs on a shared machine hit both sides alike; medians over repeats and the ratios ours/TRL are reported as
a Markdown table and as JSON.
Both processes run with OMP_WAIT_POLICY=PASSIVE by default (see `omp_wait_policy`): on a shared machine,
OpenMP threads that spin while waiting made every step several times slower, on both sides.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/ppo_vs_trl.py` puts only bench/ on the path
    sys.path.insert(0, str(ROOT))

from bench.common import machine_info, machine_line, markdown_table, uptime, write_results  # noqa: E402
from common.flags import add_dataclass_args, from_namespace  # noqa: E402

SIDES = ("ours", "trl")
TRL_VERSION = "1.12.0"  # the last release with trl.experimental.ppo
REFERENCE_TRL_S = 147.0  # measured before on this machine: TRL 1.12, 64 episodes, these settings, 2 cores
TARGET_RATIO = 1.5  # episodes/s ours over TRL that we aim for


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


# The smoke run writes next to the full results rather than over them.
QUICK = {"total_episodes": 16, "out": str(ROOT / "bench" / "results" / "ppo_vs_trl_quick.json")}


def parse_args(argv: list[str] | None = None) -> tuple[BenchConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(description="Benchmark our PPO against TRL 1.12's PPO on the same workload.")
    add_dataclass_args(parser, BenchConfig)
    # Internal: the parent starts itself again with these to run one side in a clean process.
    worker = parser.add_argument_group("worker (internal)")
    worker.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    worker.add_argument("--spec", help=argparse.SUPPRESS)
    worker.add_argument("--result", help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    cfg = from_namespace(BenchConfig, ns)
    if cfg.quick:
        defaults = BenchConfig()
        cfg = dataclasses.replace(
            cfg, **{k: v for k, v in QUICK.items() if getattr(cfg, k) == getattr(defaults, k)}
        )
    _check_config(cfg, parser)
    return cfg, ns


def _check_config(cfg: BenchConfig, parser: argparse.ArgumentParser) -> None:
    if cfg.mini_batch_size <= 0 or cfg.batch_size % cfg.mini_batch_size:
        parser.error("--mini-batch-size must be positive and divide --batch-size.")
    if cfg.total_episodes % cfg.batch_size:
        parser.error("--total-episodes must be a multiple of --batch-size (TRL rounds up, ours rounds down).")
    if cfg.total_episodes > cfg.n_prompts:
        # Beyond one pass our trainer reshuffles with a generator the PPO updates also draw from, so the
        # TRL side could no longer be handed the same batches.
        parser.error("--total-episodes must not exceed --n-prompts (one pass, same batches on both sides).")
    if cfg.repeats < 1:
        parser.error("--repeats must be positive.")


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


# ---------------------------------------------------------------------------- models (inside a side's process)


def set_threads_and_seed(cfg: BenchConfig) -> None:
    import torch

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)


def load_reward_model(cfg: BenchConfig, pad_token_id: int) -> Any:
    """SmolLM2 as a 1-label sequence classifier with a score head drawn from `seed` alone, so both sides (and
    TRL's value model) start from the identical network whatever else was drawn before."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(cfg.model, num_labels=1, dtype=torch.float32)
    generator = torch.Generator().manual_seed(cfg.seed)
    with torch.no_grad():
        std = model.config.initializer_range  # the scale from_pretrained would have drawn it at
        model.score.weight.copy_(torch.randn(model.score.weight.shape, generator=generator) * std)
    model.config.pad_token_id = pad_token_id
    return model.eval()


def rm_scores(reward_model: Any, sequences: list[list[int]], pad_token_id: int) -> Any:
    """Scores [B] of whole sequences at their last real token: left-padded, with positions that count real
    tokens only, read through backbone + score head as TRL's `get_reward` does."""
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)  # [B, L]
    mask = torch.zeros((len(sequences), width), dtype=torch.long)  # [B, L]
    for row, seq in enumerate(sequences):
        ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq) :] = 1
    position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)  # [B, L]
    with torch.no_grad():
        backbone = getattr(reward_model, reward_model.base_model_prefix)
        hidden = backbone(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=False)
        last = hidden.last_hidden_state[:, -1]  # [B, H]: left padding puts every last real token here
        return reward_model.score(last).squeeze(-1).float()  # [B]


def load_policy(cfg: BenchConfig, pad_token_id: int) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=torch.float32)
    model.generation_config.pad_token_id = pad_token_id  # rows that finished early are filled with it
    return model


def load_tokenizer(cfg: BenchConfig, spec: dict) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    tokenizer.pad_token = spec["pad_token"]
    tokenizer.padding_side = "left"  # TRL's collator pads queries; generation needs them right-aligned
    return tokenizer


def answer_stats(responses: list[list[int]], eos_token_id: int) -> tuple[float, float, int]:
    """(mean answer length with its EOS, fraction that ended with EOS, total answer tokens)."""
    lengths = [len(r) for r in responses]
    ended = [bool(r) and r[-1] == eos_token_id for r in responses]
    return statistics.mean(lengths), sum(ended) / len(ended), sum(lengths)


# ---------------------------------------------------------------------------- our side


def our_ppo_config(cfg: BenchConfig) -> Any:
    from align.ppo import PPOConfig

    return PPOConfig(
        learning_rate=cfg.learning_rate,
        batch_size=cfg.batch_size,
        mini_batch_size=cfg.mini_batch_size,
        epochs=cfg.ppo_epochs,
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_p=1.0,
        init_kl_coef=cfg.kl_coef,
        adaptive_kl=False,  # TRL 1.12's PPO has only a fixed coefficient
        missing_eos_penalty=cfg.missing_eos_penalty,
        lora_r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=0.0,
        lora_target_modules=list(cfg.lora_target_modules),
        total_episodes=cfg.total_episodes,
        seed=cfg.seed,
    )


class PhaseTimer:
    """Seconds spent in the wrapped rollout generation and PPO update calls of each step, and the answers
    that were generated, so the step time can be split and the prompt order checked."""

    def __init__(self) -> None:
        self.generate_s: list[float] = []
        self.update_s: list[float] = []
        self.prompts: list[list[list[int]]] = []
        self.responses: list[list[list[int]]] = []
        self.decoded: list[int] = []  # tokens generate produced, filler after EOS included: B x decode steps

    def wrap_generator(self, generate: Any) -> Any:
        def timed_generate(model, tokenizer, prompt_ids, ppo_cfg):
            start = time.perf_counter()
            rollout = generate(model, tokenizer, prompt_ids, ppo_cfg)
            self.generate_s.append(time.perf_counter() - start)
            self.prompts.append([list(p) for p in prompt_ids])
            self.responses.append(rollout.responses())
            self.decoded.append(rollout.response_ids.numel())
            return rollout

        return timed_generate

    def wrap_update(self, update: Any) -> Any:
        def timed_update(**kwargs):
            start = time.perf_counter()
            stats = update(**kwargs)
            self.update_s.append(time.perf_counter() - start)
            return stats

        return timed_update


def run_ours(cfg: BenchConfig, spec: dict) -> dict:
    """Build our trainer outside the clock, then time `train` over the prompts."""
    import align.ppo as ppo
    from align.rollout import generate_rollouts

    set_threads_and_seed(cfg)
    tokenizer = load_tokenizer(cfg, spec)
    reward_model = load_reward_model(cfg, spec["pad_token_id"])
    ppo_cfg = our_ppo_config(cfg)
    policy = ppo.build_policy(load_policy(cfg, spec["pad_token_id"]), ppo_cfg)
    timer = PhaseTimer()
    # ppo_step calls the module-level ppo_update; rebinding it here times the update without editing ppo.py.
    ppo.ppo_update = timer.wrap_update(ppo.ppo_update)
    step_ends: list[float] = []

    def score_fn(queries: list[list[int]], responses: list[list[int]]):
        return rm_scores(reward_model, [q + r for q, r in zip(queries, responses)], spec["pad_token_id"])

    trainer = ppo.PPOTrainer(
        model=policy,
        tokenizer=tokenizer,
        score_fn=score_fn,
        cfg=ppo_cfg,
        generator=timer.wrap_generator(generate_rollouts),
        on_step=lambda _n, _stats: step_ends.append(time.perf_counter()),
    )
    start, cpu_start = time.perf_counter(), time.process_time()
    stats = trainer.train(spec["prompt_ids"])
    wall_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    steps = []
    for i, s in enumerate(stats):
        length, eos_fraction, tokens = answer_stats(timer.responses[i], spec["eos_token_id"])
        steps.append({
            "reward": s["reward"], "kl": s["kl"], "answer_length": length, "eos_fraction": eos_fraction,
            "answer_tokens": tokens, "step_s": step_ends[i] - (step_ends[i - 1] if i else start),
            "generate_s": timer.generate_s[i], "decoded_tokens": timer.decoded[i], "update_s": timer.update_s[i],
        })
    return {"wall_s": wall_s, "cpu_s": cpu_s, "steps": steps, "prompts": timer.prompts}


# ---------------------------------------------------------------------------- TRL side


def trl_args(cfg: BenchConfig, output_dir: str) -> Any:
    from trl.experimental.ppo import PPOConfig

    return PPOConfig(
        output_dir=output_dir,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="constant",  # ours keeps the rate fixed; TRL would decay it linearly to 0
        per_device_train_batch_size=cfg.batch_size,  # a whole rollout batch, one micro batch per minibatch
        gradient_accumulation_steps=1,
        num_mini_batches=cfg.batch_size // cfg.mini_batch_size,
        num_ppo_epochs=cfg.ppo_epochs,
        total_episodes=cfg.total_episodes,
        local_rollout_forward_batch_size=cfg.batch_size,  # one generate call per batch, as ours
        response_length=cfg.max_new_tokens,
        stop_token="eos",  # stop at EOS and pad after it, as ours does
        temperature=cfg.temperature,
        missing_eos_penalty=cfg.missing_eos_penalty,
        kl_coef=cfg.kl_coef,
        kl_estimator="k1",  # the estimator ours uses for its rewards and its logged KL
        cliprange=0.2, cliprange_value=0.2, vf_coef=0.1, gamma=1.0, lam=0.95,  # ours' defaults, also TRL's
        whiten_rewards=False,
        num_sample_generations=0,  # debugging generations would add untimed-on-our-side work
        gradient_checkpointing=False,  # TRL's config default; a 135M model on CPU has no memory to save
        bf16=False,  # float32 on both sides
        seed=cfg.seed,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        use_cpu=True,
    )


def trl_lora(cfg: BenchConfig) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, target_modules=list(cfg.lora_target_modules),
        bias="none", task_type="CAUSAL_LM",
    )


class TRLProbe:
    """Records what TRL's loop does without changing it: per-step generate time, the queries it answered,
    the raw reward-model scores (TRL logs them only after its missing-EOS penalty) and its logged metrics."""

    def __init__(self, reward_model: Any, pad_token_id: int, eos_token_id: int) -> None:
        self.reward_model, self.pad_token_id, self.eos_token_id = reward_model, pad_token_id, eos_token_id
        self.generate_s: list[float] = []
        self.prompts: list[list[list[int]]] = []
        self.scores: list[list[float]] = []
        self.responses: list[list[list[int]]] = []
        self.logs: list[dict] = []
        self.decoded: list[int] = []  # tokens generate produced, filler after EOS included: B x decode steps
        self.step_ends: list[float] = []

    def wrap_generation(self, batch_generation: Any) -> Any:
        def timed_batch_generation(model, queries, *args, **kwargs):
            start = time.perf_counter()
            out = batch_generation(model, queries, *args, **kwargs)
            self.generate_s.append(time.perf_counter() - start)
            self.prompts.append([row[row != self.pad_token_id].tolist() for row in queries])
            self.decoded.append(out[0][:, queries.shape[1] :].numel())  # out: (query_responses, logits)
            return out

        return timed_batch_generation

    def wrap_reward(self, get_reward: Any) -> Any:
        def recorded_get_reward(model, query_responses, pad_token_id, context_length):
            out = get_reward(model, query_responses, pad_token_id, context_length)
            if model is self.reward_model:  # the value model goes through get_reward too
                self.scores.append(out[1].tolist())
                answers = query_responses[:, context_length:]
                self.responses.append([row[row != pad_token_id].tolist() for row in answers])
            return out

        return recorded_get_reward

    def callback(self) -> Any:
        from transformers import TrainerCallback

        probe = self

        class RecordLogs(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "objective/kl" in logs:
                    probe.logs.append(dict(logs))
                    probe.step_ends.append(time.perf_counter())

        return RecordLogs()


def sequential_dataloader(trainer: Any, dataset: Any, batch_size: int) -> Any:
    """TRL shuffles its DataLoader with its own seed; the dataset is already in our trainer's order, so read it
    in sequence to give TRL the same batch at every step."""
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=trainer.data_collator,
                        drop_last=True)
    return trainer.accelerator.prepare(loader)


def run_trl(cfg: BenchConfig, spec: dict) -> dict:
    """Build TRL 1.12's trainer outside the clock, then time `train`."""
    import trl
    import trl.experimental.ppo.ppo_trainer as trl_ppo
    from datasets import Dataset

    if trl.__version__ != TRL_VERSION:
        raise RuntimeError(f"TRL side imported trl {trl.__version__} from {trl.__file__}, not {TRL_VERSION}.")
    set_threads_and_seed(cfg)
    tokenizer = load_tokenizer(cfg, spec)
    reward_model = load_reward_model(cfg, spec["pad_token_id"])
    value_model = load_reward_model(cfg, spec["pad_token_id"])  # TRL's examples start the critic from the RM
    policy = load_policy(cfg, spec["pad_token_id"])
    probe = TRLProbe(reward_model, spec["pad_token_id"], spec["eos_token_id"])
    trl_ppo.batch_generation = probe.wrap_generation(trl_ppo.batch_generation)
    trl_ppo.get_reward = probe.wrap_reward(trl_ppo.get_reward)
    dataset = Dataset.from_dict({"input_ids": [spec["prompt_ids"][i] for i in spec["order"]]})
    with tempfile.TemporaryDirectory(prefix="bench-trl-ppo-") as output_dir:
        torch_seed_for_lora(cfg)
        trainer = trl_ppo.PPOTrainer(
            args=trl_args(cfg, output_dir), processing_class=tokenizer, model=policy, ref_model=None,
            reward_model=reward_model, train_dataset=dataset, value_model=value_model,
            peft_config=trl_lora(cfg), callbacks=[probe.callback()],
        )
        trainer.dataloader = sequential_dataloader(trainer, dataset, cfg.batch_size)
        start, cpu_start = time.perf_counter(), time.process_time()
        trainer.train()
        wall_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    steps = []
    for i, log in enumerate(probe.logs):
        length, eos_fraction, tokens = answer_stats(probe.responses[i], spec["eos_token_id"])
        steps.append({
            "reward": statistics.mean(probe.scores[i]), "kl": log["objective/kl"], "answer_length": length,
            "eos_fraction": eos_fraction, "answer_tokens": tokens,
            "step_s": probe.step_ends[i] - (probe.step_ends[i - 1] if i else start),
            "generate_s": probe.generate_s[i], "decoded_tokens": probe.decoded[i],
        })
    return {"wall_s": wall_s, "cpu_s": cpu_s, "steps": steps, "prompts": probe.prompts}


def torch_seed_for_lora(cfg: BenchConfig) -> None:
    """TRL wraps the policy in LoRA inside its constructor; seed right before, as our build_policy does."""
    import torch

    torch.manual_seed(cfg.seed)


def run_worker(side: str, spec_path: str, result_path: str) -> None:
    """Entry point of a side's subprocess: run one side, write its result JSON."""
    spec = json.loads(Path(spec_path).read_text())
    cfg = BenchConfig(**spec["config"])
    result = run_ours(cfg, spec) if side == "ours" else run_trl(cfg, spec)
    result["same_batches"] = result.pop("prompts") == expected_batches(spec)
    result["load_avg_1m_after"] = os.getloadavg()[0]
    Path(result_path).write_text(json.dumps(result))


# ---------------------------------------------------------------------------- parent: running the sides


def ensure_trl(trl_dir: str) -> None:
    """Install TRL 1.12.0 into `trl_dir` (without dependencies, outside the venv) unless it is there."""
    marker = Path(trl_dir) / f"trl-{TRL_VERSION}.dist-info"
    if marker.is_dir():
        return
    print(f"TRL {TRL_VERSION} not found in {trl_dir}; installing it there (only the TRL side imports it): "
          f"pip install --no-deps --target {trl_dir} trl=={TRL_VERSION}", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", trl_dir,
                    f"trl=={TRL_VERSION}"], check=True)


def side_env(side: str, cfg: BenchConfig) -> dict[str, str]:
    env = dict(os.environ)
    env["TOKENIZERS_PARALLELISM"] = "false"  # no extra tokenizer threads competing for the 2 cores
    env["OMP_NUM_THREADS"] = str(cfg.threads)
    if cfg.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = cfg.omp_wait_policy
    env["TRL_EXPERIMENTAL_SILENCE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    if side == "trl":
        # First on the path: TRL 1.12 shadows the venv's TRL 1.16 in this process only.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (cfg.trl_dir, env.get("PYTHONPATH")) if p)
    return env


def run_side(side: str, cfg: BenchConfig, spec_path: Path, work: Path, label: str) -> dict:
    """One side in a fresh subprocess; its log goes to a file and is shown if it fails."""
    result_path, log_path = work / f"{label}.json", work / f"{label}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", side, "--spec", str(spec_path),
           "--result", str(result_path)]
    load_before = os.getloadavg()[0]
    print(f"[{label}] running (load avg {load_before:.2f}) ...", file=sys.stderr, flush=True)
    with open(log_path, "wb") as log:
        proc = subprocess.run(cmd, cwd=ROOT, env=side_env(side, cfg), stdout=log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=cfg.run_timeout_s)
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-60:])
        raise RuntimeError(f"[{label}] exited with {proc.returncode}; log tail:\n{tail}")
    result = json.loads(result_path.read_text())
    result["load_avg_1m_before"] = load_before
    summarise_run(result, cfg)
    print(f"[{label}] {cfg.total_episodes} episodes in {result['wall_s']:.1f} s "
          f"({result['cpu_s']:.0f} CPU s) = "
          f"{result['episodes_per_s']:.3f} episodes/s; reward {result['steps'][0]['reward']:+.3f} -> "
          f"{result['steps'][-1]['reward']:+.3f}; same batches: {result['same_batches']}", file=sys.stderr,
          flush=True)
    return result


def summarise_run(result: dict, cfg: BenchConfig) -> None:
    """Throughput figures of one run, added to it."""
    steps = result["steps"]
    result["episodes_per_s"] = cfg.total_episodes / result["wall_s"]
    generate_s = sum(s["generate_s"] for s in steps)
    result["generate_s"] = generate_s
    result["answer_tokens_per_s"] = sum(s["answer_tokens"] for s in steps) / generate_s
    result["decoded_tokens_per_s"] = sum(s["decoded_tokens"] for s in steps) / generate_s
    if all("update_s" in s for s in steps):
        update_s = sum(s["update_s"] for s in steps)
        result["update_s"] = update_s
        # Sample passes: each episode goes forward and backward once per PPO epoch.
        result["update_samples_per_s"] = len(steps) * cfg.batch_size * cfg.ppo_epochs / update_s
        result["score_and_reference_s"] = result["wall_s"] - generate_s - update_s
    else:
        result["rest_s"] = result["wall_s"] - generate_s  # scoring, reference, value and update together


def run_alternating(cfg: BenchConfig, spec_path: Path, work: Path) -> dict[str, list[dict]]:
    """`repeats` runs per side, the order flipped each round (ours/TRL, TRL/ours, ...): a slow spell on the
    shared machine then lands on both sides rather than on one."""
    runs: dict[str, list[dict]] = {side: [] for side in SIDES}
    for r in range(cfg.repeats):
        order = SIDES if r % 2 == 0 else SIDES[::-1]
        for side in order:
            runs[side].append(run_side(side, cfg, spec_path, work, f"{side}-{r + 1}"))
    return runs


# ---------------------------------------------------------------------------- report


def median_side(runs: list[dict]) -> dict:
    """Medians over one side's runs, and its per-step curves (median over runs at each step)."""
    keys = ["wall_s", "cpu_s", "episodes_per_s", "generate_s", "answer_tokens_per_s", "decoded_tokens_per_s"]
    keys += [k for k in ("update_s", "update_samples_per_s", "score_and_reference_s", "rest_s") if k in runs[0]]
    out = {k: statistics.median(run[k] for run in runs) for k in keys}
    n_steps = len(runs[0]["steps"])
    for curve in ("reward", "kl", "answer_length", "eos_fraction", "step_s"):
        out[f"{curve}_per_step"] = [statistics.median(run["steps"][i][curve] for run in runs)
                                    for i in range(n_steps)]
    out["same_batches"] = all(run["same_batches"] for run in runs)
    return out


def compare_sides(medians: dict) -> dict:
    ours, trl = medians["ours"], medians["trl"]
    return {
        "episodes_per_s_ours_over_trl": ours["episodes_per_s"] / trl["episodes_per_s"],
        # CPU seconds of the whole training loop, TRL over ours: other jobs stretch wall time far more than
        # the CPU time a side needs (idle OpenMP threads sleep, see omp_wait_policy), so this ratio is the
        # steadier one on a shared machine.
        "cpu_trl_over_ours": trl["cpu_s"] / ours["cpu_s"],
        "decoded_tokens_per_s_ours_over_trl": ours["decoded_tokens_per_s"] / trl["decoded_tokens_per_s"],
        "target_ratio": TARGET_RATIO,
        "trl_reference_wall_s": REFERENCE_TRL_S,
    }


def curve_summary(values: list[float]) -> str:
    """First -> last step, and the mean of each half, so a trend shows even with few steps."""
    half = max(1, len(values) // 2)
    return (f"{values[0]:+.3f} -> {values[-1]:+.3f} (mean first half {statistics.mean(values[:half]):+.3f}, "
            f"second half {statistics.mean(values[half:] or values):+.3f})")


def step_table(medians: dict) -> str:
    """Per-step reward, KL and step time of both sides; the prompt batch at each step is the same."""
    ours, trl = medians["ours"], medians["trl"]
    rows = [[i + 1, f"{ours['reward_per_step'][i]:+.3f}", f"{trl['reward_per_step'][i]:+.3f}",
             f"{ours['kl_per_step'][i]:.3f}", f"{trl['kl_per_step'][i]:.3f}", f"{ours['answer_length_per_step'][i]:.1f}",
             f"{trl['answer_length_per_step'][i]:.1f}", f"{ours['step_s_per_step'][i]:.1f}",
             f"{trl['step_s_per_step'][i]:.1f}"] for i in range(len(ours["reward_per_step"]))]
    return markdown_table(["step", "reward ours", "reward TRL", "KL ours", "KL TRL", "answer len ours",
                           "answer len TRL", "step s ours", "step s TRL"], rows, align="r" * 9)


def side_table(medians: dict) -> str:
    """Each side's medians: time, throughput, and reward, KL and answer length over the run."""
    rows = []
    for side in SIDES:
        s = medians[side]
        rows.append([side, f"{s['wall_s']:.1f}", f"{s['cpu_s']:.1f}", f"{s['episodes_per_s']:.3f}",
                     f"{s['generate_s']:.1f}", f"{s['decoded_tokens_per_s']:.1f} / {s['answer_tokens_per_s']:.1f}",
                     f"{s['update_s']:.1f}" if "update_s" in s else "n/a",
                     f"{s['update_samples_per_s']:.2f}" if "update_samples_per_s" in s else "n/a",
                     f"{s['reward_per_step'][0]:+.3f} -> {s['reward_per_step'][-1]:+.3f}",
                     f"{s['kl_per_step'][0]:.3f} -> {s['kl_per_step'][-1]:.3f}",
                     f"{statistics.mean(s['answer_length_per_step']):.1f}"])
    return markdown_table(["side", "train wall (s)", "train CPU (s)", "episodes/s", "generate (s)",
                           "generate tok/s (decoded / answer)", "update (s)", "update samples/s",
                           "reward first -> last step", "KL first -> last step", "mean answer length"],
                          rows, align="l" + "r" * 10)


def report_markdown(report: dict) -> str:
    m, cfg, med, ratio = report["machine"], report["config"], report["medians"], report["ratios"]
    lines = [
        f"Machine: {machine_line(m)}; no GPU; torch {m['torch']}, "
        f"transformers {m['transformers']}, peft {m['peft']}; TRL side: trl {m['trl_side']}.",
        f"Load before: `{report['uptime_before']}`; after: `{report['uptime_after']}`.",
        f"Workload (both sides): SmolLM2-135M-Instruct float32, LoRA r{cfg['lora_r']}/alpha {cfg['lora_alpha']} "
        f"on {'/'.join(m_.split('_')[0] for m_ in cfg['lora_target_modules'])}, {cfg['total_episodes']} episodes "
        f"= {cfg['total_episodes'] // cfg['batch_size']} steps of {cfg['batch_size']}, {cfg['ppo_epochs']} PPO "
        f"epochs x {cfg['batch_size'] // cfg['mini_batch_size']} minibatches of {cfg['mini_batch_size']}, "
        f"answers <= {cfg['max_new_tokens']} tokens stopping at EOS, temperature {cfg['temperature']}, lr "
        f"{cfg['learning_rate']:g} constant, KL coef {cfg['kl_coef']} fixed, {cfg['threads']} torch threads "
        f"(OMP_WAIT_POLICY={cfg['omp_wait_policy'] or 'unset'}); "
        f"same prompt batches per step: {med['ours']['same_batches'] and med['trl']['same_batches']}. "
        f"Medians of {cfg['repeats']} run(s) per side, alternating; only `train()` is timed.",
        "",
        side_table(med),
        "",
        f"**ours / TRL: {ratio['episodes_per_s_ours_over_trl']:.2f}x episodes/s** (target >= {TARGET_RATIO}x); "
        f"CPU time of the loop TRL / ours: {ratio['cpu_trl_over_ours']:.2f}x; "
        f"generate decoded tok/s ours / TRL: {ratio['decoded_tokens_per_s_ours_over_trl']:.2f}x. "
        f"TRL reference on this machine: {REFERENCE_TRL_S:.0f} s for 64 episodes.",
        "",
        "Reward (mean RM score per step, before the missing-EOS penalty): "
        f"ours {curve_summary(med['ours']['reward_per_step'])}; TRL {curve_summary(med['trl']['reward_per_step'])}.",
        f"KL (k1, nats per answer): ours {curve_summary(med['ours']['kl_per_step'])}; "
        f"TRL {curve_summary(med['trl']['kl_per_step'])}.",
        "",
        step_table(med),
        "",
        "Generate tok/s: decoded = batch x decode steps (what `generate` computed, filler after an early EOS "
        "included), answer = real answer tokens up to EOS. "
        "ours: update = `ppo_update` (2 epochs of forward+backward), the rest of a step is scoring, the policy's "
        "log-probs/values and the reference pass. TRL: its update is not separated; generate = `batch_generation`. "
        "Critic: TRL trains a separate full 135M value model; ours a linear value head on the policy.",
    ]
    return "\n".join(lines)


def run_benchmark(cfg: BenchConfig) -> dict:
    ensure_trl(cfg.trl_dir)
    spec = build_spec(cfg)
    report = {"machine": {**machine_info("torch", "transformers", "peft", "accelerate"), "trl_side": TRL_VERSION},
              "config": dataclasses.asdict(cfg), "uptime_before": uptime(),
              "prompts_truncated": spec["prompts_truncated"], "prompt_tokens_mean": spec["prompt_tokens_mean"]}
    with tempfile.TemporaryDirectory(prefix="bench-ppo-") as tmp:
        work = Path(tmp)
        spec_path = work / "spec.json"
        spec_path.write_text(json.dumps(spec))
        runs = run_alternating(cfg, spec_path, work)
    report["uptime_after"] = uptime()
    report["runs"] = runs
    report["medians"] = {side: median_side(runs[side]) for side in SIDES}
    report["ratios"] = compare_sides(report["medians"])
    return report


def main(argv: list[str] | None = None) -> None:
    cfg, ns = parse_args(argv)
    if ns.worker:
        run_worker(ns.worker, ns.spec, ns.result)
        return
    report = run_benchmark(cfg)
    table = report_markdown(report)
    report["markdown"] = table
    write_results(report, cfg.out, indent=2)
    print(table)
    print(f"\nJSON: {cfg.out}", file=sys.stderr)


if __name__ == "__main__":  # each side re-runs this file as a subprocess; imports alone must not run anything
    main()
