"""Every field of the alignment configs has help text, which becomes its --flag's help."""

from __future__ import annotations

from dataclasses import fields

import pytest

from align.config import RewardConfig, SFTConfig
from align.direct import DPOConfig, KTOConfig
from align.rloo import RLOOConfig
from align.round import RoundConfig


@pytest.mark.parametrize("config", [RewardConfig, SFTConfig, RoundConfig, RLOOConfig, DPOConfig, KTOConfig])
def test_every_field_has_help(config):
    assert [f.name for f in fields(config) if not f.metadata.get("help")] == []
