"""--device takes 'auto' (the GPU when there is one) or 'cpu'; anything else is refused with a sentence
that says how to pick GPUs instead."""

import pytest

from align.stage_configs import ConfigError, RoundConfig


def test_only_auto_and_cpu():
    assert RoundConfig().device == "auto" and RoundConfig(device="cpu").device == "cpu"
    with pytest.raises(ConfigError, match="--device must be 'auto' or 'cpu', not 'cuda:1'; choose GPUs with"):
        RoundConfig(device="cuda:1")
