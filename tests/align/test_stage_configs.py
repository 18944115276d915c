"""One registry of the round's configs (align.stage_configs.STAGES): `align run` and `align worker` take
the same round flags from it, a field means the same under the same name in every stage, and metrics.json
records the configs under the registry's names."""

import argparse
from dataclasses import fields

from align.config import RewardConfig, SFTConfig
from align.rloo import RLOOConfig
from align.round import add_round_arguments
from align.stage_configs import STAGES, RoundConfig, configs_record
from align.worker import add_worker_arguments


def command_flags(add_arguments) -> set[str]:
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    return {action.option_strings[0] for action in parser._actions}


def test_run_and_worker_take_the_same_round_flags():
    run_only, worker_only = {"--data-dir", "--round-id"}, {"--server", "--token", "--work-dir", "--http-timeout-s"}
    assert command_flags(add_round_arguments) - run_only == command_flags(add_worker_arguments) - worker_only


def test_threads_and_lora_modules_have_one_name_in_every_stage():
    names = {f.name for stage in STAGES for f in fields(stage.config)}
    assert {"num_threads", "lora_target_modules"} <= names and not names & {"threads", "target_modules"}
    renamed = {"--num-threads", "--sft-lora-target-modules", "--rm-lora-target-modules"}
    assert renamed <= command_flags(add_round_arguments)


def test_metrics_record_each_config_under_its_registry_name():
    record = configs_record(RoundConfig(), SFTConfig(), RewardConfig(), RLOOConfig(k=8))

    assert list(record) == ["round", "sft", "reward", "rloo"] and record["rloo"]["k"] == 8
