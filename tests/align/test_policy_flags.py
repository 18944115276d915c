"""`--policy` and each method's own flags reach the round's configs: what the app's --align-args
"--policy dpo --dpo-beta 0.2" puts after `python -m align run`."""

import shlex

from align.__main__ import build_parser
from align.direct import DPOConfig, KTOConfig
from align.ppo import PPOConfig
from align.rloo import RLOOConfig
from align.stage_configs import stage_configs_from_args


def test_policy_flags_reach_the_configs():
    args = build_parser().parse_args(["run", "--data-dir", "d", *shlex.split("--policy dpo --dpo-beta 0.2 "
                                                                              "--rloo-k 8 --no-kto-with-pairs")])
    configs = stage_configs_from_args(args)

    assert configs.round.policy == "dpo"
    assert configs.policies == {"ppo": PPOConfig(), "rloo": RLOOConfig(k=8), "dpo": DPOConfig(beta=0.2),
                                "kto": KTOConfig(with_pairs=False)}


def test_ppo_stays_the_default():
    assert stage_configs_from_args(build_parser().parse_args(["run"])).round.policy == "ppo"
