"""No module of ours grows past 600 lines: a file that long holds several things that each deserve
a name (issue 17 split storage/store.py, align/ppo.py and bench/ppo_vs_trl.py along their seams)."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("app.py", "serving", "align", "storage", "loop", "common", "bench")
LIMIT = 600


def modules():
    for name in PACKAGES:
        path = REPO / name
        yield from ([path] if path.is_file() else sorted(path.rglob("*.py")))


@pytest.mark.parametrize("path", list(modules()), ids=lambda p: str(p.relative_to(REPO)))
def test_module_is_at_most_600_lines(path):
    assert len(path.read_text().splitlines()) <= LIMIT
