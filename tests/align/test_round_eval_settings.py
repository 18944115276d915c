"""The round evaluates on at least 2 held-out prompts (the gate's interval is taken over prompts) with
at least one answer each; by default 32 prompts x 4 answers. Other settings are refused up front."""

import pytest

from align.stage_configs import ConfigError, RoundConfig


def test_the_default_evaluation_is_32_prompts_x_4_answers():
    cfg = RoundConfig()
    assert (cfg.eval_prompts, cfg.eval_answers_per_prompt) == (32, 4)


@pytest.mark.parametrize("settings", [dict(eval_prompts=1), dict(eval_answers_per_prompt=0), dict(eval_batch_size=0)])
def test_an_evaluation_without_an_interval_is_refused(settings):
    with pytest.raises(ConfigError, match="--eval-prompts must be at least 2"):
        RoundConfig(**settings)
