"""`storage export` writes what README calls TRL-ready: its pairs.jsonl, sft.jsonl and kto.jsonl load
with `datasets` and train a step in TRL's own RewardTrainer, SFTTrainer and KTOTrainer (a tiny model
with SmolLM2's tokenizer and chat template), with no conversion in between."""

import math

import pytest
from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
from trl import KTOConfig, KTOTrainer, RewardConfig, RewardTrainer, SFTConfig, SFTTrainer

from storage import FeedbackStore
from storage.export import export_all
from storage.importer import import_pairs
from tests.storage.test_import_pairs import TRAIN

ONE_STEP = dict(max_steps=1, per_device_train_batch_size=2, report_to=[], save_strategy="no", use_cpu=True,
                logging_steps=1, learning_rate=1e-3)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Eight real HH pairs as rankings, thumbs on their answers, and a rewrite of one answer: every
    kind of row the export writes."""
    import gzip

    data = tmp_path_factory.mktemp("export")
    subset = data / "pairs.jsonl.gz"
    with gzip.open(TRAIN, "rt") as f, gzip.open(subset, "wt") as out:
        out.writelines(next(f) for _ in range(8))
    store = FeedbackStore.open(data)
    import_pairs(store, subset)
    for ranking in store.rankings()[:2]:  # both answers voted on: thumbs pairs
        better, worse = ranking.response_ids
        store.record_vote(response_id=better, user="import", rating=1)
        store.record_vote(response_id=worse, user="import", rating=-1, reason="Unhelpful")
    for i, ranking in enumerate(store.rankings()[2:6]):  # one answer each: unpaired, KTO's rows
        store.record_vote(response_id=ranking.response_ids[i % 2], user="import", rating=1 if i % 2 == 0 else -1)
    store.record_demonstration(response_id=store.rankings()[0].response_ids[1], user="import",
                               content="I can't help with that, but here is a safer idea.")
    counts = export_all(store, data / "out")
    assert (counts["pairs"], counts["sft"], counts["kto"]) == (8 + 2 + 1, 1, 4)
    return data / "out"


def rows(path):
    return load_dataset("json", data_files=str(path), split="train")


def trained_loss(trainer) -> float:
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert trainer.state.global_step == 1 and losses and math.isfinite(losses[-1])
    return losses[-1]


def test_pairs_train_in_reward_trainer(exported, tiny_base, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_base, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    trainer = RewardTrainer(model=model, args=RewardConfig(output_dir=str(tmp_path), max_length=256, **ONE_STEP),
                            train_dataset=rows(exported / "pairs.jsonl"), processing_class=tokenizer)
    trained_loss(trainer)


def test_sft_rows_train_in_sft_trainer(exported, tiny_base, tmp_path):
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_base),
                         args=SFTConfig(output_dir=str(tmp_path), max_length=256, **ONE_STEP),
                         train_dataset=rows(exported / "sft.jsonl"),
                         processing_class=AutoTokenizer.from_pretrained(tiny_base))
    trained_loss(trainer)


def test_kto_rows_train_in_kto_trainer(exported, tiny_base, tmp_path):
    trainer = KTOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_base),
                         ref_model=AutoModelForCausalLM.from_pretrained(tiny_base),
                         args=KTOConfig(output_dir=str(tmp_path), max_length=256, **ONE_STEP),
                         train_dataset=rows(exported / "kto.jsonl"),
                         processing_class=AutoTokenizer.from_pretrained(tiny_base))
    trained_loss(trainer)
