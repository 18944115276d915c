"""A policy method that does not exist, or cannot run as asked, is refused with a sentence before any model
loads."""

import pytest

from align.__main__ import main
from align.direct import KTOConfig
from align.distributed import Ranks
from align.policy import POLICY_STAGES, PolicyError, PolicyInputs
from align.rloo import RLOOConfig


def inputs(*, thumbs=(), pairs=(), ranks=Ranks()) -> PolicyInputs:
    return PolicyInputs(base_path="unused", start_adapter=None, scorer=None, train_prompts=[], pairs=list(pairs),
                        thumbs=list(thumbs), out_dir="unused", ranks=ranks)


def test_an_unknown_policy_is_refused_with_a_sentence(tmp_path, capsys):
    assert main(["run", "--data-dir", str(tmp_path), "--policy", "nope"]) == 2
    assert capsys.readouterr().err.strip() == "--policy must be one of ppo, rloo, dpo, kto, not 'nope'."
    assert list(tmp_path.iterdir()) == []  # no database, no round recorded


def test_one_process_methods_refuse_several_ranks():
    with pytest.raises(PolicyError, match="--policy rloo trains in one process"):
        POLICY_STAGES["rloo"].check(inputs(ranks=Ranks(rank=0, world_size=2)), RLOOConfig())


def test_kto_without_enough_thumbs_says_how_many():
    thumb = {"prompt": [{"role": "user", "content": "hi"}], "completion": [{"role": "assistant", "content": "yo"}],
             "label": True}
    with pytest.raises(PolicyError, match="found 1 labelled answers, at least 8 needed .--kto-with-pairs"):
        POLICY_STAGES["kto"].check(inputs(thumbs=[thumb]), KTOConfig(with_pairs=False))
