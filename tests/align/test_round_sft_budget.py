"""SFT on rewritten answers trains for --sft-budget-share of the round's --time-budget-s, counted from the
round's start, and the policy stage gets what is left (a round once ran 16.6 min: SFT took 811 s of 900)."""

import time
from types import SimpleNamespace

import pytest

from align.round import RoundData, train_candidate
from align.stage_configs import ConfigError, RoundConfig
from tests.align.test_round_time_budget import PAIR, RM, BudgetRecorder, Stop, stages
from tests.align.tiny_chat import user_prompts

SFT = SimpleNamespace(min_demonstrations=1)
DEMO = {"prompt": [{"role": "user", "content": "w5"}], "completion": [{"role": "assistant", "content": "w16"}]}


class SFTRecorder:
    def __init__(self) -> None:
        self.deadline = None

    def __call__(self, *, out_dir, should_stop, **kw):
        self.deadline = should_stop
        return {"optimizer_steps": 1, "planned_steps": 1, "stopped_at_step": None}


def sft_deadline(tmp_path, *, started, lines=None, **round_flags):
    sft, lines = SFTRecorder(), [] if lines is None else lines
    data = RoundData(pairs=[PAIR], pairs_available=1, demonstrations=[DEMO], train_prompts=user_prompts(4, seed=1),
                     eval_prompts=user_prompts(2, seed=2), newest_feedback_id={})
    with pytest.raises(Stop):
        train_candidate(data=data, base_path="unused", active=None, out_dir=tmp_path, sft_cfg=SFT, rm_cfg=RM,
                        cfg=RoundConfig(policy="rloo", **round_flags), ppo_cfg=None,
                        stages=stages(BudgetRecorder(), train_sft=sft), progress=lambda line, **_: lines.append(line),
                        started=started)
    return sft.deadline


def test_sft_gets_its_share_of_the_round_budget(tmp_path):
    lines = []
    deadline = sft_deadline(tmp_path, started=time.monotonic() - 100, time_budget_s=900, sft_budget_share=0.3,
                            lines=lines)
    assert 165 < deadline.left_s() <= 170  # 270 s less the 100 already spent
    assert not deadline()
    assert any(line.startswith("SFT on 1 demonstrations for up to 17") for line in lines)


def test_sft_whose_share_is_spent_stops_after_its_first_step(tmp_path):
    deadline = sft_deadline(tmp_path, started=time.monotonic() - 300, time_budget_s=900, sft_budget_share=0.3)
    assert deadline()


def test_no_round_budget_leaves_sft_its_epochs(tmp_path):
    deadline = sft_deadline(tmp_path, started=time.monotonic() - 5000, time_budget_s=0)
    assert deadline.left_s() is None and not deadline()


def test_the_share_is_checked():
    with pytest.raises(ConfigError, match="--sft-budget-share"):
        RoundConfig(sft_budget_share=1.5)
