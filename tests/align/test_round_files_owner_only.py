"""What a round writes (its adapter directory and its log) is owner-only: adapters and logs are
made from users' conversations."""

import os
import stat
from types import SimpleNamespace

import pytest

from loop.gate import GateConfig
from align.round import Stages, run_round
from align.stage_configs import RoundConfig
from loop.schedule import ScheduleConfig
from loop.rounds import RoundSupervisor
from storage.store import FeedbackStore

from bench.tiny import store_with_pairs


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def loose_umask():
    before = os.umask(0o022)
    yield
    os.umask(before)


def test_the_adapter_directory_is_owner_only(tmp_path, loose_umask):
    store = store_with_pairs(tmp_path, 30)
    seen = {}

    def train_reward_model(*, out_dir, **_):
        seen["tmp"], seen["adapters"] = mode(out_dir.parent), mode(out_dir.parent.parent)
        raise RuntimeError("stop after the directories exist")

    stages = Stages(train_sft=None, train_reward_model=train_reward_model, reward_scorer=None,
                    split_pairs=lambda rows, eval_fraction, seed: (rows, rows[:1]))
    with pytest.raises(RuntimeError, match="stop after"):
        run_round(store=store, data_dir=tmp_path, cfg=RoundConfig(model="an-hf-id", min_pairs=4, min_prompts=4,
                                                                   eval_prompts=4),
                  sft_cfg=SimpleNamespace(min_demonstrations=100),
                  rm_cfg=SimpleNamespace(eval_fraction=0.2, max_pairs=0), ppo_cfg=None, stages=stages,
                  progress=lambda *_, **__: None)
    assert seen == {"tmp": 0o700, "adapters": 0o700}


def test_the_round_log_is_owner_only(tmp_path, loose_umask):
    store = FeedbackStore.open(tmp_path)  # no feedback: the round process refuses at once
    supervisor = RoundSupervisor(store=store, adapters=None, data_dir=tmp_path, model="an-hf-id",
                                 schedule=ScheduleConfig(), gate=GateConfig())
    started = supervisor.start_round(trigger="admin")
    supervisor._child.wait(120)
    assert (mode(tmp_path / "rounds"), mode(started.log_path)) == (0o700, 0o600)
    assert "Too little feedback" in open(started.log_path).read()
