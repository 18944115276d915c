"""load_pairs_file reads prompt/chosen/rejected JSONL and JSONL.gz, and refuses a bad line by number."""

from __future__ import annotations

import gzip
import json

import pytest

from align.data import load_pairs_file
from storage.errors import InvalidInput

PAIR = {
    "prompt": [{"role": "user", "content": "Hi?"}],
    "chosen": [{"role": "assistant", "content": "Hello!"}],
    "rejected": [{"role": "assistant", "content": "Go away."}],
}


def test_reads_gzipped_jsonl(tmp_path):
    path = tmp_path / "pairs.jsonl.gz"
    path.write_bytes(gzip.compress((json.dumps(PAIR) + "\n").encode()))

    [row] = load_pairs_file(path)

    assert (row["prompt"], row["chosen"], row["rejected"]) == (PAIR["prompt"], PAIR["chosen"], PAIR["rejected"])
    assert row["group"].startswith("prompt:")


def test_bad_line_is_refused_with_its_number(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(PAIR) + "\n{not json\n")

    with pytest.raises(InvalidInput, match="Line 2 of pairs.jsonl is not valid JSON."):
        load_pairs_file(path)
