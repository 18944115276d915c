"""SFT asked to stop (a round's budget) ends after that optimizer step and still saves the adapter it has."""

from __future__ import annotations

from bench.tiny import save_tiny_base

from align.config import SFTConfig
from align.sft import train_sft
from tests.align.test_sft_learns import demonstrations


def test_sft_stops_after_the_step_its_budget_passes_and_saves_what_it_learned(tmp_path, model_path):
    tiny = save_tiny_base(tmp_path / "tiny-llama", model_path)
    cfg = SFTConfig(epochs=4, batch_size=2, gradient_accumulation=1, max_length=64, lora_r=4, lora_alpha=8,
                    min_demonstrations=4)
    asked = []

    def out_of_time() -> bool:
        asked.append(True)
        return len(asked) >= 3

    metrics = train_sft(base_model_path=tiny, rows=demonstrations(8), cfg=cfg, out_dir=tmp_path / "adapter",
                        should_stop=out_of_time)

    assert metrics["planned_steps"] == 16  # 8 rows / 2 per step x 4 epochs
    assert metrics["optimizer_steps"] == metrics["stopped_at_step"] == 3
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


def test_sft_without_a_budget_runs_every_planned_step(tmp_path, model_path):
    tiny = save_tiny_base(tmp_path / "tiny-llama", model_path)
    cfg = SFTConfig(epochs=1, batch_size=4, gradient_accumulation=1, max_length=64, lora_r=4, lora_alpha=8,
                    min_demonstrations=4)

    metrics = train_sft(base_model_path=tiny, rows=demonstrations(8), cfg=cfg, out_dir=tmp_path / "adapter")

    assert metrics["optimizer_steps"] == metrics["planned_steps"] == 2
    assert metrics["stopped_at_step"] is None
