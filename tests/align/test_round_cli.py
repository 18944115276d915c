"""`python -m align run` with too little feedback says so on stderr, exits 2 and registers nothing."""

import subprocess
import sys

from storage.store import FeedbackStore

from tests.conftest import REPO


def test_run_with_too_little_data(tmp_path):
    FeedbackStore.open(tmp_path).close()
    result = subprocess.run([sys.executable, "-m", "align", "run", "--data-dir", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "Too little feedback for a round: 0 preference pairs" in result.stderr
    assert FeedbackStore.open(tmp_path).adapters() == []
    assert not (tmp_path / "adapters").exists()
