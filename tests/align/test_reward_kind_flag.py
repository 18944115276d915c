"""--rm-kind chooses the reward model; a kind that does not exist is refused with a sentence naming the flag."""

import pytest

from align.stage_configs import ConfigError, parse_stage_flags


def test_the_kinds():
    assert parse_stage_flags([]).reward.kind == "pooled"
    assert parse_stage_flags(["--rm-kind", "lora"]).reward.kind == "lora"


def test_an_unknown_kind_is_refused():
    with pytest.raises(ConfigError, match="--rm-kind must be one of pooled, lora, not 'linear'"):
        parse_stage_flags(["--rm-kind", "linear"])


def test_the_head_needs_a_step():
    with pytest.raises(ConfigError, match="--rm-head-steps is 0"):
        parse_stage_flags(["--rm-head-steps", "0"])
