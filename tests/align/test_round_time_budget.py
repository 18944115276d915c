"""The policy stage trains for what is left of the round's --time-budget-s once --eval-reserve-s (or
--eval-engine-reserve-s, when the serving engine samples the evaluation's answers) is kept for the evaluation,
counted from when the round began; --policy-budget-s caps that, and --time-budget-s 0 leaves
the method's own step count to decide."""

import time
from types import SimpleNamespace

import pytest

from align.rloo import RLOOConfig
from align.round import RoundData, Stages, run_round, train_candidate
from align.stage_configs import RoundConfig
from common.eval_samples import EVAL_TOKEN_ENV, EVAL_URL_ENV
from tests.align.tiny_chat import RuleScorer, user_prompts

from bench.tiny import store_with_pairs

PAIR = {"prompt": [{"role": "user", "content": "w5"}], "chosen": [{"role": "assistant", "content": "w16"}],
        "rejected": [{"role": "assistant", "content": "w40"}]}
SFT = SimpleNamespace(min_demonstrations=100)
RM = SimpleNamespace(eval_fraction=0.2, max_pairs=0)


class Stop(Exception):
    """Ends the round once the policy stage has its inputs: the evaluation is not what these tests look at."""


class BudgetRecorder:
    name, config = "rloo", RLOOConfig

    def __init__(self) -> None:
        self.budgets = []

    def check(self, inputs, cfg):
        pass

    def train(self, inputs, cfg):
        self.budgets.append(inputs.budget_s)
        raise Stop


def stages(recorder, train_sft=None) -> Stages:
    return Stages(train_sft=train_sft, split_pairs=lambda pairs, eval_fraction, seed: (pairs, []),
                  train_reward_model=lambda **kw: {"held_out_accuracy": 0.9},
                  reward_scorer=lambda base, rm_dir, device: RuleScorer(), policy_stages={"rloo": recorder})


def budget_given(tmp_path, *, started, lines=None, **round_flags):
    recorder, lines = BudgetRecorder(), [] if lines is None else lines
    data = RoundData(pairs=[PAIR], pairs_available=1, demonstrations=[], train_prompts=user_prompts(4, seed=1),
                     eval_prompts=user_prompts(2, seed=2), newest_feedback_id={})
    with pytest.raises(Stop):
        train_candidate(data=data, base_path="unused", active=None, out_dir=tmp_path, sft_cfg=SFT, rm_cfg=RM,
                        cfg=RoundConfig(policy="rloo", **round_flags), ppo_cfg=None, stages=stages(recorder),
                        progress=lambda line, **_: lines.append(line),
                        started=started)
    [budget] = recorder.budgets
    return budget


def test_the_policy_stage_gets_what_is_left_of_the_round_less_the_evaluations_reserve(tmp_path):
    lines = []
    budget = budget_given(tmp_path, started=time.monotonic() - 100, time_budget_s=900, eval_reserve_s=150,
                          lines=lines)
    assert 645 < budget <= 650
    assert lines[-1].startswith("Policy (rloo) from a new adapter for up to 6") and lines[-1].endswith(" s ...")


def test_a_round_whose_evaluation_the_serving_engine_samples_keeps_that_reserve(tmp_path, monkeypatch):
    # Answers as long as served ones cost more to sample, score and take the KL of than 48-token ones.
    monkeypatch.setenv(EVAL_URL_ENV, "http://127.0.0.1:9/api/align/eval-samples")
    monkeypatch.setenv(EVAL_TOKEN_ENV, "secret")
    flags = dict(time_budget_s=900, eval_reserve_s=150, eval_engine_reserve_s=240)
    assert 555 < budget_given(tmp_path, started=time.monotonic() - 100, eval_on_engine=True, **flags) <= 560
    assert 645 < budget_given(tmp_path, started=time.monotonic() - 100, **flags) <= 650


def test_policy_budget_s_caps_it(tmp_path):
    assert budget_given(tmp_path, started=time.monotonic(), time_budget_s=900, policy_budget_s=60) == 60
    assert budget_given(tmp_path, started=time.monotonic(), time_budget_s=0, policy_budget_s=60) == 60


def test_no_round_budget_gives_no_budget(tmp_path):
    lines = []
    assert budget_given(tmp_path, started=time.monotonic() - 5000, time_budget_s=0, lines=lines) is None
    assert lines[-1] == "Policy (rloo) from a new adapter ..."


def test_a_round_whose_time_is_spent_still_gives_its_policy_stage_a_budget(tmp_path):
    # Below zero: the stage trains its first step and stops (tests/align/test_policy_budget.py).
    assert budget_given(tmp_path, started=time.monotonic() - 1000, time_budget_s=900, eval_reserve_s=150) < -249


def test_run_round_counts_from_its_own_start(tmp_path):
    store, recorder = store_with_pairs(tmp_path, 30), BudgetRecorder()
    with pytest.raises(Stop):
        run_round(store=store, data_dir=tmp_path, cfg=RoundConfig(model="an-hf-id", policy="rloo", min_pairs=4,
                                                                   min_prompts=4, eval_prompts=4),
                  sft_cfg=SFT, rm_cfg=RM, ppo_cfg=None, stages=stages(recorder), progress=lambda *_, **__: None)
    [budget] = recorder.budgets
    assert 700 < budget <= 900 - 150
