"""The reward model: the base LM read by a scalar score head, trained with LoRA on preference pairs.

Training uses TRL's RewardTrainer and its pairwise loss -log sigmoid(r_chosen - r_rejected). Every
conversation is rendered with the tokenizer's chat template and, when longer than max_length, keeps the
answer from its start and cuts the prompt from the left (encode_answer); training and scoring share that
one function, so the model is always read the way it was trained.

A saved reward model is one directory:
    adapter_config.json, adapter_model.safetensors   LoRA weights and the score head (PEFT modules_to_save)
    tokenizer files                                   the tokenizer it was trained with, pad token set
    reward_model.json                                 base model path, kept layers, max_length (written last)
    rm_metrics.json                                   held-out accuracy, pair counts, train time, config
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from peft import LoraConfig, PeftModel
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerBase,
    set_seed,
)
from transformers.utils import logging as transformers_logging
from trl import RewardConfig as TRLRewardConfig
from trl import RewardTrainer

from .config import RewardConfig
from .data import Row, check_enough

log = logging.getLogger(__name__)

META_FILE = "reward_model.json"  # written last: a directory without it is not a finished reward model
METRICS_FILE = "rm_metrics.json"
SCORE_BATCH_SIZE = 16  # sequences per scoring forward pass; sorted by length, so padding stays small
Chat = list[dict[str, str]]


class RewardModelNotFound(FileNotFoundError):
    """A directory that does not hold a saved reward model."""


# ---------------------------------------------------------------------------- encoding

def encode_answer(tokenizer: PreTrainedTokenizerBase, prompt: Chat, answer: str, *, max_length: int) -> list[int]:
    """Token ids of the prompt followed by the answer, chat template applied, at most max_length long.

    The answer is kept whole from its first token (an answer is judged on how it starts as much as on
    how it ends), up to max_length minus a quarter kept for the prompt; the prompt fills what is left
    and is cut from the left: the turns just before the answer matter most, the opening turns (and the
    template's system prompt) least.
    """
    return encode_answer_parts(tokenizer, prompt, answer, max_length=max_length)[0]


def encode_answer_parts(tokenizer: PreTrainedTokenizerBase, prompt: Chat, answer: str, *,
                        max_length: int) -> tuple[list[int], int]:
    """encode_answer's ids and the position where the answer's tokens start in them (the pooled kind reads
    those tokens only). With a template that renders the prompt differently once answered, the ids are
    the conversation's last max_length tokens and the answer is taken to start at the first of them."""
    conversation = [*prompt, {"role": "assistant", "content": answer}]
    ids = list(tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"])
    head = list(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                              return_dict=True)["input_ids"])
    if ids[: len(head)] != head:
        return ids[-max_length:], 0
    if len(ids) <= max_length:
        return ids, len(head)
    answer_ids = ids[len(head):]  # the answer and the template's end-of-turn tokens
    kept_answer = min(len(answer_ids), max_length - min(len(head), max_length // 4))
    kept_prompt = max_length - kept_answer
    return head[len(head) - kept_prompt :] + answer_ids[:kept_answer], kept_prompt


def tokenize_pairs(rows: Sequence[Row], tokenizer: PreTrainedTokenizerBase, *, max_length: int) -> Dataset:
    """Pre-tokenized pairs for RewardTrainer. TRL would drop pairs longer than max_length instead of
    cutting them, so they are cut here; 'length' lets the sampler batch pairs of similar length."""
    chosen = [encode_answer(tokenizer, r["prompt"], r["chosen"][0]["content"], max_length=max_length) for r in rows]
    rejected = [encode_answer(tokenizer, r["prompt"], r["rejected"][0]["content"], max_length=max_length) for r in rows]
    lengths = [max(len(c), len(r)) for c, r in zip(chosen, rejected)]  # the collator pads both to one length
    return Dataset.from_dict({"chosen_ids": chosen, "rejected_ids": rejected, "length": lengths})


# ---------------------------------------------------------------------------- model

@contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Let torch use n CPU threads inside the block (0: leave its setting alone); restore the count after."""
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token is None:
        # The score is read at the last non-pad token, so the pad token must exist; EOS is the usual choice.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_lowest_blocks(auto_class: Any, base_model_path: str | Path, *, num_layers: int, **kwargs: Any) -> Any:
    """auto_class.from_pretrained(base model) in float32, keeping its lowest num_layers blocks (0, or at least
    as many as the model has: all of them)."""
    depth = AutoConfig.from_pretrained(str(base_model_path)).num_hidden_layers
    overrides: dict[str, Any] = {"num_hidden_layers": num_layers} if 0 < num_layers < depth else {}
    # The load report lists every dropped block as UNEXPECTED and a new head as MISSING (or the unused LM
    # head as UNEXPECTED): all intended here, and the table buried the command's own output.
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        return auto_class.from_pretrained(str(base_model_path), dtype=torch.float32, **overrides, **kwargs)
    finally:
        transformers_logging.set_verbosity(verbosity)


def load_score_model(base_model_path: str | Path, *, num_layers: int, pad_token_id: int) -> torch.nn.Module:
    """The base LM as a sequence classifier with one output (the reward), keeping its lowest num_layers
    blocks (0, or at least as many as the model has: all of them)."""
    model = load_lowest_blocks(AutoModelForSequenceClassification, base_model_path, num_layers=num_layers,
                               num_labels=1)
    # LlamaForSequenceClassification reads the score at the last token that is not pad_token_id.
    model.config.pad_token_id = pad_token_id
    return model


def lora_config(cfg: RewardConfig) -> LoraConfig:
    return LoraConfig(
        task_type="SEQ_CLS",
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_target_modules),
        modules_to_save=["score"],  # the head is new and must be trained (and saved) in full
    )


def trainer_args(cfg: RewardConfig, output_dir: str, *, use_cpu: bool = False) -> TRLRewardConfig:
    return TRLRewardConfig(
        use_cpu=use_cpu,  # otherwise the Trainer takes this rank's GPU whenever there is one
        output_dir=output_dir,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation,
        max_length=cfg.max_length,  # a no-op filter: tokenize_pairs already cut every sequence to this
        seed=cfg.seed,
        warmup_steps=0.05,  # a short warmup keeps the fresh score head from jumping on its first batches
        bf16=False,  # TRL defaults to bf16; CPU autocast in bf16 is unreliable, and the model is small enough for fp32
        gradient_checkpointing=False,  # TRL's default trades compute for memory, which the CPU lacks, not RAM
        train_sampling_strategy="group_by_length",  # pairs of similar length together: far less padding
        remove_unused_columns=False,  # keep 'length' for the sampler; the collator reads only the id columns
        logging_steps=10,
        dataloader_pin_memory=torch.cuda.is_available(),  # pinning only helps copies to a GPU
        save_strategy="no",  # the model is saved once, by save_reward_model
        report_to="none",
        disable_tqdm=True,
    )


def train_reward_model(
    *,
    base_model_path: str | Path,
    train_rows: Sequence[Row],
    eval_rows: Sequence[Row],
    cfg: RewardConfig,
    out_dir: str | Path,
    use_cpu: bool = False,
) -> dict[str, Any]:
    """Train a reward model on train_rows, measure its pairwise accuracy on eval_rows, save it to out_dir.
    use_cpu keeps training on the CPU when there is a GPU. Under `accelerate launch` every rank calls
    this and trains on its share of each batch (the Trainer's data parallelism); rank 0 saves, and
    every rank returns once the reward model is on disk.

    Raises NotEnoughData (and saves nothing) when train_rows has fewer than cfg.min_pairs pairs.
    """
    check_enough(train_rows, cfg.min_pairs, "preference pairs for training")
    with cpu_threads(cfg.num_threads):
        if cfg.kind == "pooled":
            from .pooled_reward import train_pooled_reward_model

            return train_pooled_reward_model(base_model_path=base_model_path, train_rows=train_rows,
                                             eval_rows=eval_rows, cfg=cfg, out_dir=Path(out_dir))
        return _train_and_save(base_model_path, train_rows, eval_rows, cfg, Path(out_dir), use_cpu)


def _train_and_save(
    base_model_path: str | Path, train_rows: Sequence[Row], eval_rows: Sequence[Row], cfg: RewardConfig, out_dir: Path,
    use_cpu: bool,
) -> dict[str, Any]:
    tokenizer = load_tokenizer(base_model_path)
    set_seed(cfg.seed)  # the score head is initialised at random when the model is loaded
    model = load_score_model(base_model_path, num_layers=cfg.num_layers, pad_token_id=tokenizer.pad_token_id)
    train_dataset = tokenize_pairs(train_rows, tokenizer, max_length=cfg.max_length)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rm-trainer-") as scratch:
        trainer = RewardTrainer(
            model=model,
            args=trainer_args(cfg, scratch, use_cpu=use_cpu),
            train_dataset=train_dataset,
            processing_class=tokenizer,
            peft_config=lora_config(cfg),
        )
        result = trainer.train()
    train_seconds = time.monotonic() - started
    scorer = RewardScorer(model=trainer.model, tokenizer=tokenizer, max_length=cfg.max_length)
    metrics = {
        "held_out_accuracy": pairwise_accuracy(scorer, eval_rows) if eval_rows else None,
        "held_out_pairs": len(eval_rows),
        "train_pairs": len(train_rows),
        "train_loss": result.training_loss,
        "train_seconds": round(train_seconds, 1),
        "processes": trainer.accelerator.num_processes,  # > 1 under accelerate launch: data-parallel
        "optimizer_steps": trainer.state.global_step,
        "base_model": str(base_model_path),
        "config": asdict(cfg),
    }
    if trainer.is_world_process_zero():  # every rank holds the same weights; one writes them
        save_reward_model(trainer.model, tokenizer, out_dir, base_model_path=base_model_path, cfg=cfg, metrics=metrics)
    trainer.accelerator.wait_for_everyone()  # the other ranks load the reward model next
    return metrics


def save_reward_model(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: str | Path,
    *,
    base_model_path: str | Path,
    cfg: RewardConfig,
    metrics: dict[str, Any],
) -> Path:
    """Write the adapter, score head, tokenizer and metadata; the directory appears whole or not at all."""

    def write_weights(partial: Path) -> None:
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)

    return save_reward_files(out_dir, kind="lora", base_model_path=base_model_path, cfg=cfg, metrics=metrics,
                             write_weights=write_weights)


def save_reward_files(out_dir: str | Path, *, kind: str, base_model_path: str | Path, cfg: RewardConfig,
                      metrics: dict[str, Any], write_weights: Callable[[Path], None]) -> Path:
    """Either kind's directory: write_weights(partial) fills a scratch directory, the metrics and the metadata
    (written last) follow, and a rename makes it appear whole or not at all."""
    out = Path(out_dir)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    write_weights(partial)
    meta = {
        "kind": kind,
        "base_model": _recorded_path(base_model_path),
        "num_layers": cfg.num_layers,
        "max_length": cfg.max_length,
    }
    (partial / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    (partial / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial.rename(out)
    return out


def _recorded_path(model: str | Path) -> str:
    """A local base model as an absolute path, so the RM loads from any working directory; an HF id as is."""
    return str(Path(model).resolve()) if Path(model).exists() else str(model)


# ---------------------------------------------------------------------------- scoring

class RewardScorer:
    """Owns one reward model in memory (base blocks, LoRA, score head) and the tokenizer it was trained
    with, and turns (prompt, answer) pairs into scalar rewards."""

    def __init__(
        self,
        *,
        model: torch.nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int,
        batch_size: int = SCORE_BATCH_SIZE,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size

    @classmethod
    def load(
        cls, rm_dir: str | Path, *, base_model_path: str | Path | None = None, batch_size: int = SCORE_BATCH_SIZE,
        device: torch.device | str = "cpu",
    ) -> RewardScorer:
        """Load a directory written by save_reward_model onto `device`; base_model_path overrides the
        recorded base."""
        rm_dir = Path(rm_dir)
        meta_path = rm_dir / META_FILE
        if not meta_path.is_file():
            raise RewardModelNotFound(f"{rm_dir} does not hold a trained reward model ({META_FILE} is missing).")
        meta = json.loads(meta_path.read_text())
        tokenizer = load_tokenizer(rm_dir)
        if meta.get("kind") == "pooled":
            from .pooled_reward import PooledScorer

            return PooledScorer.load(rm_dir, meta, tokenizer, base_model_path=base_model_path, batch_size=batch_size,
                                     device=device)
        base = load_score_model(
            base_model_path or meta["base_model"], num_layers=meta["num_layers"], pad_token_id=tokenizer.pad_token_id
        )
        model = PeftModel.from_pretrained(base, str(rm_dir)).to(device)
        return cls(model=model, tokenizer=tokenizer, max_length=meta["max_length"], batch_size=batch_size)

    def score(self, prompts: Sequence[Chat], answers: Sequence[str]) -> list[float]:
        """One reward per (prompt, answer); higher means the answer is preferred."""
        if len(prompts) != len(answers):
            raise ValueError(f"Got {len(prompts)} prompts but {len(answers)} answers.")
        encoded = [encode_answer(self.tokenizer, p, a, max_length=self.max_length) for p, a in zip(prompts, answers)]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # similar lengths share a batch
        scores = [0.0] * len(encoded)
        self.model.eval()
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                rewards = self._forward([encoded[i] for i in batch])  # [B]
                for i, reward in zip(batch, rewards.tolist()):
                    scores[i] = reward
        return scores

    def _forward(self, sequences: list[list[int]]) -> torch.Tensor:
        """Rewards of right-padded sequences, the padding TRL's collator uses in training."""
        width = max(len(s) for s in sequences)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in sequences])  # [B, T]
        attention_mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences])  # [B, T]
        device = next(self.model.parameters()).device
        logits = self.model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
        return logits[:, 0].float().cpu()  # [B]


def pairwise_accuracy(scorer: RewardScorer, rows: Sequence[Row]) -> float:
    """Share of pairs whose chosen answer scores strictly higher than the rejected one.

    A tie counts as wrong, as in RewardTrainer's own accuracy metric: a model that scores everything
    the same has learned nothing and should get 0, not 0.5.
    """
    if not rows:
        raise ValueError("Pairwise accuracy needs at least one pair.")
    prompts = [row["prompt"] for row in rows]
    chosen = scorer.score(prompts, [row["chosen"][0]["content"] for row in rows])
    rejected = scorer.score(prompts, [row["rejected"][0]["content"] for row in rows])
    return sum(c > r for c, r in zip(chosen, rejected)) / len(rows)
