"""Supervised fine-tuning: a LoRA adapter on the causal LM, trained on user-written demonstrations.

Rows are conversational prompt/completion pairs (storage.export.demonstrations). TRL's SFTTrainer
renders both with the chat template and, with completion_only_loss, sets the label of every prompt
token to -100, so the loss covers only the demonstrated answer (and its end-of-turn tokens).

The saved directory is a plain PEFT LoRA adapter that vLLM can hot-load: adapter_config.json and
adapter_model.safetensors with LoRA weights only (no modules_to_save, no embeddings), plus sft_metrics.json.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
from trl import SFTConfig as TRLSFTConfig
from trl import SFTTrainer

from .config import SFTConfig
from .data import Row, check_enough, completion_dataset
from .reward import cpu_threads
from .trainer_stop import StopWhen

METRICS_FILE = "sft_metrics.json"


def lora_config(cfg: SFTConfig) -> LoraConfig:
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_target_modules),
    )


def trainer_args(cfg: SFTConfig, output_dir: str, *, use_cpu: bool = False) -> TRLSFTConfig:
    return TRLSFTConfig(
        use_cpu=use_cpu,  # otherwise the Trainer takes this rank's GPU whenever there is one
        output_dir=output_dir,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation,
        max_length=cfg.max_length,
        completion_only_loss=True,  # TRL's default (None) also means True for prompt/completion rows; say it
        seed=cfg.seed,
        bf16=False,  # TRL defaults to bf16; CPU autocast in bf16 is unreliable, and the model is small enough for fp32
        gradient_checkpointing=False,  # TRL's default trades compute for memory, which the CPU lacks, not RAM
        logging_steps=1,  # demonstrations are few, so every step's loss is worth keeping
        dataloader_pin_memory=torch.cuda.is_available(),  # pinning only helps copies to a GPU
        save_strategy="no",  # the adapter is saved once, by save_adapter
        report_to="none",
        disable_tqdm=True,
    )


def build_sft_trainer(
    *, base_model_path: str | Path, rows: Sequence[Row], cfg: SFTConfig, output_dir: str, use_cpu: bool = False
) -> SFTTrainer:
    """An SFTTrainer with a fresh LoRA adapter on the base model, ready to train on rows."""
    tokenizer = AutoTokenizer.from_pretrained(str(base_model_path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # the collator pads batches with it
    set_seed(cfg.seed)  # the LoRA A matrices are initialised at random
    model = AutoModelForCausalLM.from_pretrained(str(base_model_path), dtype=torch.float32)
    return SFTTrainer(
        model=model,
        args=trainer_args(cfg, output_dir, use_cpu=use_cpu),
        train_dataset=completion_dataset(rows),
        processing_class=tokenizer,
        peft_config=lora_config(cfg),
    )


def train_sft(*, base_model_path: str | Path, rows: Sequence[Row], cfg: SFTConfig, out_dir: str | Path,
              use_cpu: bool = False, should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Train a LoRA adapter on demonstrations and save it to out_dir; returns the training metrics.
    use_cpu keeps training on the CPU when there is a GPU. Under `accelerate launch` every rank calls
    this and trains on its share of each batch (the Trainer's data parallelism); rank 0 saves, and
    every rank returns once the adapter is on disk.

    should_stop, asked after every optimizer step, ends training early (a round's time budget): the adapter
    of the steps done is saved, and the metrics say where it stopped ("stopped_at_step" of "planned_steps").

    Raises NotEnoughData (and saves nothing) when rows has fewer than cfg.min_demonstrations rows.
    """
    check_enough(rows, cfg.min_demonstrations, "demonstrations")
    started = time.monotonic()
    with cpu_threads(cfg.num_threads), tempfile.TemporaryDirectory(prefix="sft-trainer-") as scratch:
        trainer = build_sft_trainer(base_model_path=base_model_path, rows=rows, cfg=cfg, output_dir=scratch,
                                    use_cpu=use_cpu)
        stop = StopWhen(should_stop)
        trainer.add_callback(stop)
        result = trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    metrics = {
        "demonstrations": len(rows),
        "train_loss": result.training_loss,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "train_seconds": round(time.monotonic() - started, 1),
        "processes": trainer.accelerator.num_processes,  # > 1 under accelerate launch: data-parallel
        "optimizer_steps": trainer.state.global_step,
        "planned_steps": trainer.state.max_steps,
        "stopped_at_step": stop.stopped_at,  # None: every planned step ran
        "base_model": str(base_model_path),
        "config": asdict(cfg),
    }
    if trainer.is_world_process_zero():  # every rank holds the same weights; one writes them
        save_adapter(trainer.model, out_dir, metrics=metrics)
    trainer.accelerator.wait_for_everyone()  # the other ranks read the adapter next
    return metrics


def save_adapter(model: PeftModel, out_dir: str | Path, *, metrics: dict[str, Any]) -> Path:
    """Write the LoRA adapter and its metrics; the directory appears whole or not at all."""
    out = Path(out_dir)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    # LoRA weights only: the adapter does not change the embeddings, and vLLM hot-loads LoRA weights alone.
    model.save_pretrained(partial, save_embedding_layers=False)
    (partial / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial.rename(out)
    return out
