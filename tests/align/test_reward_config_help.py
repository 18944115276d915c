"""Every field of the round's configs (and of `train-rm`'s) has help text, which becomes its --flag's help."""

from __future__ import annotations

from dataclasses import fields

import pytest

from align.stage_configs import STAGES


@pytest.mark.parametrize("stage", STAGES, ids=[stage.name for stage in STAGES])
def test_every_field_has_help(stage):
    assert [f.name for f in fields(stage.config) if not f.metadata.get("help")] == []
