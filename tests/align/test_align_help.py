"""Every `python -m align` command prints its --help: a '%' in a config field's help breaks argparse's help."""

import pytest

from align.__main__ import build_parser


@pytest.mark.parametrize("command", ["run", "worker", "train-rm", "evaluate-rm"])
def test_each_command_prints_its_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--help"])
    assert exit_.value.code == 0
    assert "usage: python -m align" in capsys.readouterr().out
