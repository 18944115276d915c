"""What runs inside one side's subprocess of `bench/ppo_vs_trl.py`: the models, our side, TRL's side, and
`run_worker`, the subprocess's entry point (the parent starts `bench/ppo_vs_trl.py --worker SIDE`, whose
`main` calls it)."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.ppo_vs_trl_spec import TRL_VERSION, BenchConfig, expected_batches


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
