"""`--policy` and each method's own flags reach the round's configs: what the app's --align-args
"--policy dpo --dpo-beta 0.2" puts after `python -m align run`."""

import shlex

from align.__main__ import build_parser
from align.direct import DPOConfig, KTOConfig
from align.policy import policy_configs_from_args
from align.rloo import RLOOConfig
from align.round import RoundConfig
from common.flags import from_namespace


def test_policy_flags_reach_the_configs():
    args = build_parser().parse_args(["run", "--data-dir", "d", *shlex.split("--policy dpo --dpo-beta 0.2 "
                                                                              "--rloo-k 8 --no-kto-with-pairs")])

    assert from_namespace(RoundConfig, args).policy == "dpo"
    assert policy_configs_from_args(args) == {"rloo": RLOOConfig(k=8), "dpo": DPOConfig(beta=0.2),
                                              "kto": KTOConfig(with_pairs=False)}


def test_ppo_stays_the_default():
    assert from_namespace(RoundConfig, build_parser().parse_args(["run"])).policy == "ppo"
