"""SFT computes its loss on the completion only: every prompt token's label is -100."""

from __future__ import annotations

from align.config import SFTConfig
from align.sft import build_sft_trainer


def test_only_completion_tokens_have_labels(tiny_base, tmp_path):
    rows = [
        {"prompt": [{"role": "user", "content": "What is the capital of France?"}],
         "completion": [{"role": "assistant", "content": "Paris."}]},
        {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Two plus two?"}],
         "completion": [{"role": "assistant", "content": "Four, of course."}]},
    ]
    trainer = build_sft_trainer(base_model_path=tiny_base, rows=rows, cfg=SFTConfig(batch_size=2),
                                output_dir=str(tmp_path / "scratch"))
    batch = next(iter(trainer.get_train_dataloader()))
    decode = trainer.processing_class.decode

    trained = sorted(decode(labels[labels != -100]) for labels in batch["labels"])

    assert trained == ["Four, of course.<|im_end|>\n", "Paris.<|im_end|>\n"]
