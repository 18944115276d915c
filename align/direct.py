"""Direct preference methods on the stored feedback, through TRL's own trainers: DPO on preference pairs
(Rafailov et al. 2023) and KTO on answers labelled good or bad (Ethayarajh et al. 2024).

Neither samples answers nor reads the reward model: they train a LoRA policy on what users said. The policy
is a PEFT model (a fresh LoRA, or the served adapter to continue from); TRL keeps a frozen copy of its
starting adapter as the reference, which for a fresh LoRA (B = 0) is the base model itself.

Rows are TRL's conversational formats as storage.export writes them: pairs {prompt, chosen, rejected}
and unpaired thumbs {prompt, completion, label}, each a list of chat messages.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import PrinterCallback
from trl import DPOConfig as TRLDPOConfig
from trl import DPOTrainer, KTOTrainer
from trl import KTOConfig as TRLKTOConfig

from align.config import LLAMA_LINEAR_MODULES
from align.trainer_stop import StopWhen

StepCallback = Callable[[int, int, dict[str, float]], None]  # (step, of steps, logged stats)


@dataclass
class DPOConfig:
    """DPO on the round's preference pairs (flags --dpo-<field>)."""

    learning_rate: float = field(
        default=5e-5,  # the middle of the usual LoRA DPO range (1e-5..1e-4); TRL's 1e-6 is for full fine-tuning
        metadata={"help": "AdamW learning rate for the LoRA weights."},
    )
    epochs: float = field(
        default=1.0,  # pairs are few and DPO overfits them quickly after the first pass
        metadata={"help": "Passes over the preference pairs."},
    )
    batch_size: int = field(
        default=8,  # pairs per forward pass, i.e. 16 sequences through the policy and 16 through the reference
        metadata={"help": "Preference pairs per forward pass and optimizer step."},
    )
    max_length: int = field(
        default=512,  # prompt + answer tokens, as SFT: 9 in 10 chat turns fit; the answer's end is cut first
        metadata={"help": "Longest prompt + answer in tokens; longer ones lose the answer's end, and pairs whose "
                          "prompt alone fills it are left out."},
    )
    beta: float = field(
        default=0.1,  # the DPO paper's and TRL's default
        metadata={"help": "beta: how far from the reference the policy may move (higher: less far)."},
    )
    loss_type: str = field(
        default="sigmoid",  # the DPO paper's loss; TRL also offers 'ipo', 'hinge', 'robust', ...
        metadata={"help": "TRL's DPO loss type."},
    )
    lora_r: int = field(
        default=16,  # stays below the engine's max_lora_rank (64) so vLLM can hot-swap the adapter
        metadata={"help": "LoRA rank of a new adapter (one continued from the served adapter keeps its own)."},
    )
    lora_alpha: int = field(
        default=32,  # alpha = 2r: the common scaling that keeps the update size independent of r
        metadata={"help": "LoRA alpha; the adapter's update is scaled by alpha / r."},
    )
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(LLAMA_LINEAR_MODULES),  # attention + MLP, as SFT: both learn from fixed text
        metadata={"help": "Names of the linear layers that get a LoRA adapter."},
    )
    seed: int = field(
        default=0,  # fixed so that two runs on the same data give the same adapter
        metadata={"help": "Seed for the LoRA initialisation and the data order."},
    )


@dataclass
class KTOConfig:
    """KTO on answers labelled desirable or not (flags --kto-<field>)."""

    learning_rate: float = field(
        default=5e-5,  # as DPO: the usual LoRA range; TRL's 1e-6 is for full fine-tuning
        metadata={"help": "AdamW learning rate for the LoRA weights."},
    )
    epochs: float = field(
        default=1.0,  # as DPO: the labelled answers are few
        metadata={"help": "Passes over the labelled answers."},
    )
    batch_size: int = field(
        default=8,  # KTO estimates its KL term from mismatched answers in a batch: it needs more than one
        metadata={"help": "Labelled answers per forward pass and optimizer step (at least 2)."},
    )
    max_length: int = field(
        default=512,  # as DPO and SFT
        metadata={"help": "Longest prompt + answer in tokens; longer ones lose the answer's end."},
    )
    beta: float = field(
        default=0.1,  # the KTO paper's and TRL's default
        metadata={"help": "beta: how far from the reference the policy may move (higher: less far)."},
    )
    desirable_weight: float = field(
        default=1.0,  # TRL warns when the desirable and undesirable shares call for other weights
        metadata={"help": "Weight of the loss on answers users liked."},
    )
    undesirable_weight: float = field(
        default=1.0,
        metadata={"help": "Weight of the loss on answers users disliked."},
    )
    with_pairs: bool = field(
        default=True,  # thumbs up and down on answers to one prompt become pairs, not unpaired thumbs, so
        # thumbs alone would leave KTO almost nothing when users rate several answers
        metadata={"help": "Also learn from the preference pairs, each answer labelled by whether it won more "
                          "comparisons than it lost (ties left out); otherwise only the unpaired thumbs."},
    )
    min_examples: int = field(
        default=8,  # one batch: fewer teach noise
        metadata={"help": "Fewest labelled answers to train on; fewer is refused before any model loads."},
    )
    lora_r: int = field(
        default=16,  # as DPO
        metadata={"help": "LoRA rank of a new adapter (one continued from the served adapter keeps its own)."},
    )
    lora_alpha: int = field(
        default=32,  # alpha = 2r
        metadata={"help": "LoRA alpha; the adapter's update is scaled by alpha / r."},
    )
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(LLAMA_LINEAR_MODULES),  # as DPO
        metadata={"help": "Names of the linear layers that get a LoRA adapter."},
    )
    seed: int = field(
        default=0,
        metadata={"help": "Seed for the LoRA initialisation and the data order."},
    )


def kto_examples(thumbs: list[dict], pairs: list[dict], *, with_pairs: bool) -> list[dict]:
    """Unpaired thumbs, and with_pairs each answer of the pairs labelled by its wins minus losses (a
    ranking's middle answers win some and lose some; ties are left out)."""
    rows = [{"prompt": r["prompt"], "completion": r["completion"], "label": bool(r["label"])} for r in thumbs]
    if not with_pairs:
        return rows
    net: Counter[str] = Counter()
    first: dict[str, tuple[list, list]] = {}
    for pair in pairs:
        for answer, sign in ((pair["chosen"], 1), (pair["rejected"], -1)):
            key = json.dumps([pair["prompt"], answer], sort_keys=True)
            net[key] += sign
            first.setdefault(key, (pair["prompt"], answer))
    return rows + [{"prompt": first[key][0], "completion": first[key][1], "label": wins > 0}
                   for key, wins in net.items() if wins != 0]


def train_dpo(*, policy, tokenizer, pairs: list[dict], cfg: DPOConfig, out_dir: Path, use_cpu: bool,
              on_step: StepCallback | None = None, should_stop: Callable[[], bool] | None = None) -> list[dict]:
    """Train the PEFT `policy` with TRL's DPOTrainer on prompt/chosen/rejected rows; returns TRL's logged
    stats per step. The policy is trained in place (its "default" adapter)."""
    rows = [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs]
    args = TRLDPOConfig(beta=cfg.beta, loss_type=[cfg.loss_type], max_length=cfg.max_length,
                        **_training_args(cfg, out_dir, use_cpu))
    trainer = DPOTrainer(model=policy, args=args, train_dataset=Dataset.from_list(_shuffled(rows, cfg.seed)),
                         processing_class=tokenizer, callbacks=[_Progress(on_step, should_stop)])
    return _train(trainer)


def train_kto(*, policy, tokenizer, examples: list[dict], cfg: KTOConfig, out_dir: Path, use_cpu: bool,
              on_step: StepCallback | None = None, should_stop: Callable[[], bool] | None = None) -> list[dict]:
    """Train the PEFT `policy` with TRL's KTOTrainer on prompt/completion/label rows; returns TRL's logged
    stats per step."""
    args = TRLKTOConfig(beta=cfg.beta, max_length=cfg.max_length, desirable_weight=cfg.desirable_weight,
                        undesirable_weight=cfg.undesirable_weight, **_training_args(cfg, out_dir, use_cpu))
    # KTO reads its batches in order (its KL term pairs neighbours): shuffled once here, so a batch is not
    # all thumbs up or all from one ranking.
    trainer = KTOTrainer(model=policy, args=args, train_dataset=Dataset.from_list(_shuffled(examples, cfg.seed)),
                         processing_class=tokenizer, callbacks=[_Progress(on_step, should_stop)])
    return _train(trainer)


def remove_reference_adapter(policy) -> None:
    """TRL added the frozen "ref" copy of the starting adapter; only the trained one is saved and served."""
    if "ref" in policy.peft_config:
        policy.set_adapter("default")
        policy.delete_adapter("ref")


def _training_args(cfg: DPOConfig | KTOConfig, out_dir: Path, use_cpu: bool) -> dict[str, Any]:
    return dict(output_dir=str(out_dir), learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs,
                per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=1, seed=cfg.seed,
                logging_steps=1, save_strategy="no", report_to=[], use_cpu=use_cpu,
                bf16=False,  # TRL's default: slow and coarse on a CPU, and the served adapter is float32
                gradient_checkpointing=False,  # TRL's default trades ~20% time for memory a 135M model never needs
                disable_tqdm=True, dataloader_num_workers=0)


def _shuffled(rows: list[dict], seed: int) -> list[dict]:
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    return rows


def _train(trainer) -> list[dict]:
    # With tqdm off the Trainer prints every step's dict to stdout; _Progress reports each step instead.
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return [{k: float(v) for k, v in entry.items() if isinstance(v, (int, float)) and k != "step"}
            for entry in trainer.state.log_history if "loss" in entry]


class _Progress(StopWhen):
    """Each logged step to on_step; a stop after a step once should_stop() says so."""

    def __init__(self, on_step: StepCallback | None, should_stop: Callable[[], bool] | None) -> None:
        super().__init__(should_stop)
        self.on_step = on_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.on_step is not None and logs and "loss" in logs:
            self.on_step(state.global_step, state.max_steps,
                         {k: float(v) for k, v in logs.items() if isinstance(v, (int, float))})
