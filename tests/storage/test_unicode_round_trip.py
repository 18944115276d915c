"""Pairs in any script, emoji included, come out of `storage export` byte for byte as `import-pairs`
took them in: UTF-8 on disk, never \\u escapes, no normalisation."""

import gzip
import json

from storage.export import export_all
from storage.importer import import_pairs

PAIRS = [
    {"prompt": [{"role": "user", "content": "巴黎是哪个国家的首都？🇫🇷"}],
     "chosen": [{"role": "assistant", "content": "法国。😊 Paris est la capitale de la France."}],
     "rejected": [{"role": "assistant", "content": "日本の首都です。🗼"}]},
    {"prompt": [{"role": "user", "content": "Ça va ? 👋🏽 (combining: e\u0301)"}],
     "chosen": [{"role": "assistant", "content": "Très bien, merci ! 🙂‍↔️"}],
     "rejected": [{"role": "assistant", "content": "한국어로 대답합니다 🤖"}]},
]


def test_cjk_and_emoji_survive_import_and_export(store, tmp_path):
    source = tmp_path / "pairs.jsonl.gz"
    with gzip.open(source, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(p, ensure_ascii=False) + "\n" for p in PAIRS)

    assert import_pairs(store, source) == {"imported": 2, "skipped": 0}
    export_all(store, tmp_path / "out")

    raw = (tmp_path / "out" / "pairs.jsonl").read_bytes()
    exported = [json.loads(line) for line in raw.decode("utf-8").splitlines()]
    assert [(e["prompt"], e["chosen"], e["rejected"]) for e in exported] == \
        [(p["prompt"], p["chosen"], p["rejected"]) for p in PAIRS]
    for pair in PAIRS:  # the very bytes, not escapes of them
        assert pair["chosen"][0]["content"].encode("utf-8") in raw
        assert pair["prompt"][0]["content"].encode("utf-8") in raw
