"""The reward model: the base LM read by a scalar score head, trained with LoRA on preference pairs.

Training uses TRL's RewardTrainer with the pairwise loss -log sigmoid(r_chosen - r_rejected) over every pair
of a prompt's answers, each answer read once (as InstructGPT trains on a ranking's C(K, 2) pairs): the pairs
are gathered by prompt (answer_groups) and packed into batches of whole prompts (pack_groups). Every
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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
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
    conversation = [*prompt, {"role": "assistant", "content": answer}]
    ids = list(tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"])
    if len(ids) <= max_length:
        return ids
    head = list(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                              return_dict=True)["input_ids"])
    if ids[: len(head)] != head:  # a template that renders the prompt differently once answered
        return ids[-max_length:]
    answer_ids = ids[len(head):]  # the answer and the template's end-of-turn tokens
    kept_answer = min(len(answer_ids), max_length - min(len(head), max_length // 4))
    kept_prompt = max_length - kept_answer
    return head[len(head) - kept_prompt :] + answer_ids[:kept_answer]


@dataclass
class AnswerGroup:
    """One prompt's answers, each encoded once, and its preference pairs as (chosen, rejected) indices
    into `answers`. A ranking of K answers is K sequences and C(K, 2) pairs; its thumbs add pairs, not
    sequences."""

    answers: list[list[int]] = field(default_factory=list)
    pairs: list[tuple[int, int]] = field(default_factory=list)


def answer_groups(rows: Sequence[Row], tokenizer: PreTrainedTokenizerBase, *, max_length: int) -> list[AnswerGroup]:
    """The pairs gathered by prompt, in the order prompts first appear. Each distinct answer is encoded
    once (cut to max_length by encode_answer: TRL would drop a longer one); a pair given twice (by a
    ranking and by thumbs) counts twice, as two pairs did before."""
    groups: dict[str, AnswerGroup] = {}
    index: dict[str, dict[str, int]] = {}
    for row in rows:
        key = json.dumps(row["prompt"], sort_keys=True, ensure_ascii=False)
        group, seen = groups.setdefault(key, AnswerGroup()), index.setdefault(key, {})
        ends = []
        for answer in (row["chosen"][0]["content"], row["rejected"][0]["content"]):
            if answer not in seen:
                seen[answer] = len(group.answers)
                group.answers.append(encode_answer(tokenizer, row["prompt"], answer, max_length=max_length))
            ends.append(seen[answer])
        if ends[0] != ends[1]:  # "this answer over itself" teaches nothing
            group.pairs.append((ends[0], ends[1]))
    return [g for g in groups.values() if g.pairs]


def pack_groups(groups: Sequence[AnswerGroup], *, max_answers: int) -> Dataset:
    """Whole prompts packed into batches of at most max_answers sequences (a prompt with more answers is a
    batch of its own), prompts of similar length together so padding stays small: one dataset row per
    forward pass, its pairs' indices counted within the row. Pairs of single-pair prompts (an imported
    pairs file) pack max_answers / 2 pairs per batch, as TRL's pair batches did."""
    order = sorted(groups, key=lambda g: max(map(len, g.answers)))
    rows: list[dict[str, list]] = []
    answers: list[list[int]] = []
    pairs: list[list[int]] = []
    for group in order:
        if answers and len(answers) + len(group.answers) > max_answers:
            rows.append({"answer_ids": answers, "pairs": pairs})
            answers, pairs = [], []
        pairs += [[len(answers) + c, len(answers) + r] for c, r in group.pairs]
        answers += group.answers
    if answers:
        rows.append({"answer_ids": answers, "pairs": pairs})
    return Dataset.from_list(rows)


def group_pairs(rows: Sequence[Row], tokenizer: PreTrainedTokenizerBase, *, max_length: int,
                max_answers: int) -> Dataset:
    """Pairs as RewardTrainer's batches: answer_groups packed by pack_groups."""
    return pack_groups(answer_groups(rows, tokenizer, max_length=max_length), max_answers=max_answers)


@dataclass
class GroupCollator:
    """Batches of packed prompts: every answer right-padded into input_ids, and `pairs` [P, 2] indexing
    its rows (chosen, rejected)."""

    pad_token_id: int

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        sequences, pairs = [], []
        for row in rows:
            pairs += [[len(sequences) + c, len(sequences) + r] for c, r in row["pairs"]]
            sequences += row["answer_ids"]
        width = max(len(s) for s in sequences)
        return {"input_ids": torch.tensor([s + [self.pad_token_id] * (width - len(s)) for s in sequences]),
                "attention_mask": torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences]),
                "pairs": torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)}


class GroupedRewardTrainer(RewardTrainer):
    """TRL's RewardTrainer reading packed prompts (group_pairs, GroupCollator): each answer is one
    forward pass however many pairs it is in, and the loss is the mean of -log sigmoid(r_chosen -
    r_rejected) over the batch's pairs. Everything else (optimizer, schedule, accelerate's ranks) is TRL's."""

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        return dataset  # already tokenized, cut and packed by group_pairs

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["answer_ids", "pairs"]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False)
        rewards = outputs.logits.squeeze(-1)  # [N], one per answer
        pairs = inputs["pairs"]  # [P, 2]
        margins = rewards[pairs[:, 0]] - rewards[pairs[:, 1]]  # [P]
        loss = -torch.nn.functional.logsigmoid(margins).mean()
        with torch.no_grad():
            accuracy = self.accelerator.gather_for_metrics((margins > 0).float().mean()).mean().item()
            self._metrics[mode]["accuracy"].append(accuracy)
            self._metrics[mode]["margin"].append(self.accelerator.gather_for_metrics(margins.mean()).mean().item())
        return (loss, outputs) if return_outputs else loss


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


def load_score_model(base_model_path: str | Path, *, num_layers: int, pad_token_id: int) -> torch.nn.Module:
    """The base LM as a sequence classifier with one output (the reward), keeping its lowest num_layers
    blocks (0, or at least as many as the model has: all of them)."""
    depth = AutoConfig.from_pretrained(str(base_model_path)).num_hidden_layers
    overrides: dict[str, Any] = {"num_hidden_layers": num_layers} if 0 < num_layers < depth else {}
    # The load report lists every dropped block as UNEXPECTED and the new head as MISSING: both are
    # intended here, and the table buried the command's own output.
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            str(base_model_path), num_labels=1, dtype=torch.float32, **overrides
        )
    finally:
        transformers_logging.set_verbosity(verbosity)
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
        per_device_train_batch_size=1,  # one packed batch of whole prompts (group_pairs: up to cfg.batch_size answers)
        gradient_accumulation_steps=cfg.gradient_accumulation,
        max_length=cfg.max_length,  # unused: group_pairs already cut every sequence to this
        seed=cfg.seed,
        warmup_steps=0.05,  # a short warmup keeps the fresh score head from jumping on its first batches
        bf16=False,  # TRL defaults to bf16; CPU autocast in bf16 is unreliable, and the model is small enough for fp32
        gradient_checkpointing=False,  # TRL's default trades compute for memory, which the CPU lacks, not RAM
        train_sampling_strategy="random",  # the packed batches already hold answers of similar length
        remove_unused_columns=False,  # the collator reads the packed columns itself
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
        return _train_and_save(base_model_path, train_rows, eval_rows, cfg, Path(out_dir), use_cpu)


def _train_and_save(
    base_model_path: str | Path, train_rows: Sequence[Row], eval_rows: Sequence[Row], cfg: RewardConfig, out_dir: Path,
    use_cpu: bool,
) -> dict[str, Any]:
    tokenizer = load_tokenizer(base_model_path)
    set_seed(cfg.seed)  # the score head is initialised at random when the model is loaded
    model = load_score_model(base_model_path, num_layers=cfg.num_layers, pad_token_id=tokenizer.pad_token_id)
    train_dataset = group_pairs(train_rows, tokenizer, max_length=cfg.max_length, max_answers=cfg.batch_size)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rm-trainer-") as scratch:
        trainer = GroupedRewardTrainer(
            model=model,
            args=trainer_args(cfg, scratch, use_cpu=use_cpu),
            data_collator=GroupCollator(pad_token_id=tokenizer.pad_token_id),
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
        "train_answers": sum(len(row["answer_ids"]) for row in train_dataset),  # sequences one epoch reads
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
    out = Path(out_dir)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    meta = {
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
    # A ranking's answers are in several pairs each: score every (prompt, answer) once.
    keys = {}
    for row in rows:
        for side in ("chosen", "rejected"):
            keys.setdefault(_answer_key(row, side), (row["prompt"], row[side][0]["content"]))
    scores = dict(zip(keys, scorer.score([p for p, _ in keys.values()], [a for _, a in keys.values()])))
    return sum(scores[_answer_key(row, "chosen")] > scores[_answer_key(row, "rejected")] for row in rows) / len(rows)


def _answer_key(row: Row, side: str) -> str:
    return json.dumps([row["prompt"], row[side][0]["content"]], sort_keys=True, ensure_ascii=False)
