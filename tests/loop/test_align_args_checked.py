"""The app checks --align-args against the round's configs as it starts: a flag `python -m align run`
does not have, a value a round refuses, or a flag the app sets itself stops it with a sentence before
anything starts, instead of failing every round it starts later."""

import pytest

from app import parse_config
from loop.rounds import check_align_args


@pytest.mark.parametrize("args", ["", "--policy rloo --ppo-total-episodes 128", "--num-threads 2 --device cpu",
                                  "--sft-lora-target-modules q_proj v_proj"])
def test_round_flags_pass(args):
    check_align_args(args)


@pytest.mark.parametrize("args, sentence", [
    ("--ppo-totl-episodes 8", "--align-args: unrecognized arguments: --ppo-totl-episodes 8; `python -m align run "
                              "--help` lists a round's flags."),
    ("--threads 2", "--align-args: unrecognized arguments: --threads 2;"),
    ("--ppo-total-episodes many", "--align-args: argument --ppo-total-episodes: invalid int value: 'many';"),
    ("--device cuda:1", "--align-args: --device must be 'auto' or 'cpu', not 'cuda:1'"),
    ("--policy sft", "--align-args: --policy must be one of ppo, rloo, dpo, kto, not 'sft'."),
    ("--model other", "--align-args must not set --model: the app gives every round its own --data-dir, "
                      "--round-id and --model."),
    ("'--policy", "--align-args cannot be split into flags: No closing quotation."),
])
def test_a_bad_flag_is_refused_with_a_sentence(args, sentence):
    with pytest.raises(ValueError) as refused:
        check_align_args(args)
    assert str(refused.value).startswith(sentence)


def test_the_app_does_not_start_with_a_bad_flag(capsys):
    with pytest.raises(SystemExit) as stopped:
        parse_config(["--align-args", "--ppo-totl-episodes 8"])

    assert stopped.value.code == 2
    assert "error: --align-args: unrecognized arguments: --ppo-totl-episodes 8" in capsys.readouterr().err


def test_the_app_keeps_good_round_flags():
    assert parse_config(["--align-args=--policy rloo --rloo-k 8"]).schedule.args == "--policy rloo --rloo-k 8"
