"""As soon as the reward model is trained, the round reports its held-out accuracy as a progress line
with the numbers attached (the admin tab shows them while PPO runs), before the policy stage starts."""

from types import SimpleNamespace

import pytest

from align.round import Stages, run_round
from align.stage_configs import RoundConfig

from bench.tiny import store_with_pairs


def test_the_reward_models_accuracy_is_reported_before_ppo(tmp_path):
    store = store_with_pairs(tmp_path, 30)
    calls = []

    def reward_scorer(*_):
        raise RuntimeError("stop before PPO")

    stages = Stages(train_sft=None, reward_scorer=reward_scorer,
                    train_reward_model=lambda **_: {"held_out_accuracy": 0.8, "held_out_pairs": 10},
                    split_pairs=lambda rows, eval_fraction, seed: (rows, rows[:1]))
    with pytest.raises(RuntimeError, match="stop before PPO"):
        run_round(store=store, data_dir=tmp_path, cfg=RoundConfig(model="an-hf-id", min_pairs=4, min_prompts=4,
                                                                   eval_prompts=4),
                  sft_cfg=SimpleNamespace(min_demonstrations=100),
                  rm_cfg=SimpleNamespace(eval_fraction=0.2, max_pairs=0), ppo_cfg=None, stages=stages,
                  progress=lambda line, **kw: calls.append((line, kw)))

    line, kw = calls[-1]
    assert line.startswith("Reward model trained in ") and line.endswith(": 80.0% held-out accuracy on 10 pairs.")
    assert kw == {"stats": {"rm_accuracy": 0.8, "rm_held_out_pairs": 10}}
