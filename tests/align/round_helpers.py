"""Small feedback DBs for round tests."""

import gzip
import itertools
import json
from pathlib import Path

from storage.importer import import_pairs
from storage.store import FeedbackStore

HH_TRAIN = Path(__file__).resolve().parents[3] / "shared" / "data" / "hh-harmless-train.jsonl.gz"


def store_with_pairs(data_dir: Path, n: int) -> FeedbackStore:
    """A file DB holding the first n HH pairs (as rankings of two) plus two rewrites."""
    data_dir.mkdir(parents=True, exist_ok=True)
    sample = data_dir / "sample.jsonl"
    with gzip.open(HH_TRAIN, "rt") as f:
        sample.write_text("".join(itertools.islice(f, n)))
    store = FeedbackStore.open(data_dir)
    import_pairs(store, sample)
    for ranking in store.rankings()[:2]:
        store.record_demonstration(response_id=ranking.response_ids[1], user="import",
                                   content="I can't help with that, but I can point you to safer options.")
    return store


def first_line(path: Path) -> dict:
    return json.loads(path.read_text().splitlines()[0])
