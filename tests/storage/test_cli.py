import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAIR = {"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "Hello"}],
        "rejected": [{"role": "assistant", "content": "Go away"}]}


def storage_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "storage", *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_import_stats_and_export(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps(PAIR) + "\n")
    data = tmp_path / "data"

    imported = storage_cli("import-pairs", pairs, "--data-dir", data)
    stats = storage_cli("stats", "--data-dir", data)
    exported = storage_cli("export", "--data-dir", data, "--out", tmp_path / "out")

    assert json.loads(imported.stdout) == {"imported": 1, "skipped": 0}
    assert json.loads(stats.stdout) == {
        "conversations": 1, "messages": 3, "votes": 0, "rankings": 1, "demonstrations": 0, "adapters": 0,
        "rounds": 0,
    }
    assert json.loads(exported.stdout) == {"pairs": 1, "prompts": 1, "sft": 0, "kto": 0}
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["kto.jsonl", "pairs.jsonl", "prompts.jsonl", "sft.jsonl"]


def test_bad_input_exits_2_with_one_sentence_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n")
    data = tmp_path / "data"

    result = storage_cli("import-pairs", bad, "--data-dir", data)

    assert (result.returncode, result.stdout, result.stderr) == (2, "", "Line 1 of bad.jsonl is not valid JSON.\n")
    assert not data.exists()


def test_stats_without_a_database_exits_2(tmp_path):
    result = storage_cli("stats", "--data-dir", tmp_path / "nowhere")
    assert result.returncode == 2
    assert result.stderr == f"There is no database at {tmp_path / 'nowhere' / 'chat.db'}; check --data-dir.\n"
    assert not (tmp_path / "nowhere").exists()
