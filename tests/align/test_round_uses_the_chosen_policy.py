"""The round trains the policy with the stage --policy names (looked up in Stages.policy_stages), gives it
the round's data and that method's config, and evaluates what it returns as it would any method's; a stage
that refuses the data stops the round before the reward model trains."""

import json

import pytest

from align.config import RewardConfig, SFTConfig
from align.policy import PolicyError, PolicyResult, load_policy
from align.ppo import PPOConfig
from align.rloo import RLOOConfig
from align.round import RoundData, RoundError, Stages, train_candidate
from align.stage_configs import RoundConfig
from tests.align.tiny_chat import RuleScorer, save_tiny_chat_model, user_prompts

PAIR = {"prompt": [{"role": "user", "content": "w5 w6"}], "chosen": [{"role": "assistant", "content": "w16"}],
        "rejected": [{"role": "assistant", "content": "w40"}]}
THUMB = {"prompt": [{"role": "user", "content": "w7"}], "completion": [{"role": "assistant", "content": "w17"}],
         "label": True}


class FakeStage:
    """Records what it was given and returns a fresh adapter, saved where it was told."""

    name, config = "rloo", RLOOConfig

    def __init__(self, refuse: str = "") -> None:
        self.refuse, self.calls = refuse, []

    def check(self, inputs, cfg):
        if self.refuse:
            raise PolicyError(self.refuse)

    def train(self, inputs, cfg):
        self.calls.append((inputs, cfg))
        tokenizer, policy = load_policy(inputs, cfg)
        policy.save_pretrained(str(inputs.out_dir))
        return PolicyResult(policy, tokenizer, inputs.out_dir, {"method": "fake", "steps": [{"reward": 1.0}]})


def fake_stages(policy_stage, trained_rm: list) -> Stages:
    return Stages(train_sft=None, split_pairs=lambda pairs, eval_fraction, seed: (pairs, []),
                  train_reward_model=lambda **kw: trained_rm.append(kw) or {"held_out_accuracy": 0.9},
                  reward_scorer=lambda base, rm_dir, device: RuleScorer(), policy_stages={"rloo": policy_stage})


def round_data() -> RoundData:
    return RoundData(pairs=[PAIR], pairs_available=1, demonstrations=[], train_prompts=user_prompts(4, seed=1),
                     eval_prompts=user_prompts(2, seed=2), newest_feedback_id={}, thumbs=[THUMB])


def train(tmp_path, stage, trained_rm):
    base = save_tiny_chat_model(tmp_path / "base")
    (tmp_path / "out").mkdir()
    return train_candidate(data=round_data(), base_path=str(base), active=None, out_dir=tmp_path / "out",
                           cfg=RoundConfig(policy="rloo", eval_max_new_tokens=4), sft_cfg=SFTConfig(),
                           rm_cfg=RewardConfig(), ppo_cfg=PPOConfig(packed_weights=False), policy_cfgs={"rloo": RLOOConfig(lora_r=4)},
                           stages=fake_stages(stage, trained_rm), progress=lambda *a, **k: None)


def test_the_round_trains_with_the_chosen_stage_and_evaluates_it(tmp_path, one_torch_thread):
    stage, trained_rm = FakeStage(), []

    metrics = train(tmp_path, stage, trained_rm)

    [(inputs, cfg)] = stage.calls
    assert cfg == RLOOConfig(lora_r=4)
    assert (inputs.pairs, inputs.thumbs, inputs.train_prompts) == ([PAIR], [THUMB], user_prompts(4, seed=1))
    assert isinstance(inputs.scorer, RuleScorer) and inputs.out_dir == tmp_path / "out"
    assert metrics["policy"] == {"method": "fake", "steps": [{"reward": 1.0}], "budget_s": inputs.budget_s}
    assert 0 < inputs.budget_s <= 900 - 150 and "ppo_steps" not in metrics  # the round's default time budget
    assert {"rloo", "evaluation"} <= set(metrics["timings_s"]) and metrics["configs"]["rloo"]["lora_r"] == 4
    assert metrics["evaluation"]["candidate"]["n_prompts"] == 2
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["policy"]["method"] == "fake"
    assert (tmp_path / "out" / "adapter_config.json").is_file()


def test_a_stage_that_refuses_stops_the_round_before_the_reward_model(tmp_path):
    stage, trained_rm = FakeStage(refuse="--policy rloo cannot run here."), []
    with pytest.raises(RoundError, match="--policy rloo cannot run here."):
        train(tmp_path, stage, trained_rm)
    assert trained_rm == [] and stage.calls == []
