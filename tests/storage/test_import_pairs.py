import gzip
import json
from pathlib import Path

import pytest

from storage import InvalidInput
from storage.importer import import_pairs

# The shared data directory sits beside the checkout: ../shared/data.
DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TRAIN = DATA / "hh-harmless-train.jsonl.gz"

GOOD = {"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "Hello"}],
        "rejected": [{"role": "assistant", "content": "Go away"}]}




@pytest.fixture(autouse=True, scope="module")
def shared_data():
    """The real preference data is a prerequisite of this suite (see ../shared/data/README.md): its
    absence fails the tests with a sentence instead of skipping them."""
    assert TRAIN.exists(), f"{TRAIN} is missing: the tests need the shared HH-RLHF data beside the checkout."


def first_row(path):
    with gzip.open(path, "rt") as f:
        return json.loads(f.readline())


def test_each_pair_becomes_a_conversation_with_a_ranking(store):
    assert import_pairs(store, TRAIN) == {"imported": 1795, "skipped": 0}

    assert store.stats()["conversations"] == store.stats()["rankings"] == 1795
    row, ranking = first_row(TRAIN), store.rankings()[0]
    chosen, rejected = (store.message(i) for i in ranking.response_ids)
    assert store.context(ranking.prompt_id) == row["prompt"]
    assert [chosen.content, rejected.content] == [row["chosen"][0]["content"], row["rejected"][0]["content"]]
    assert (chosen.model, ranking.source, ranking.user) == ("import", "import", "import")
    assert store.conversations(user="import", limit=1)[0].source == "import"


def test_importing_the_same_file_twice_adds_nothing(store):
    import_pairs(store, TRAIN)
    before = store.stats()
    assert import_pairs(store, TRAIN) == {"imported": 0, "skipped": 1795}
    assert store.stats() == before


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("{not json", "Line 2 of pairs.jsonl is not valid JSON."),
        (
            json.dumps({**GOOD, "chosen": []}),
            "Line 2 of pairs.jsonl: 'chosen' must hold exactly one assistant message.",
        ),
        (json.dumps({**GOOD, "prompt": [{"role": "user", "content": " "}]}), "Line 2: A user message cannot be empty."),
    ],
)
def test_a_malformed_file_writes_nothing(store, dump, tmp_path, bad_line, message):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + bad_line + "\n")
    before = dump()
    with pytest.raises(InvalidInput) as error:
        import_pairs(store, path)
    assert str(error.value) == message
    assert dump() == before
