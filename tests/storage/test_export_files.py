import json

from storage.export import demonstrations, export_all, prompts


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_prompts_are_distinct_and_newest_first(store, ask):
    ask("Old question")
    ask("New question")
    ask("Old question")
    assert prompts(store) == [
        {"prompt": [{"role": "user", "content": "Old question"}]},
        {"prompt": [{"role": "user", "content": "New question"}]},
    ]


def test_demonstrations_become_prompt_completion_rows(store, ask):
    _, (answer_id,) = ask("Q", ["meh"], system="Be brief.")
    store.record_demonstration(response_id=answer_id, user="alice", content="better")
    assert demonstrations(store) == [
        {
            "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q"}],
            "completion": [{"role": "assistant", "content": "better"}],
        }
    ]


def test_export_all_writes_one_jsonl_file_per_dataset(store, ask, tmp_path):
    _, (a, b) = ask("Q", ["a", "b"])
    store.record_ranking(user="alice", response_ids=[a, b])
    store.record_demonstration(response_id=b, user="alice", content="c")
    counts = export_all(store, tmp_path / "out")
    assert counts == {"pairs": 2, "prompts": 1, "sft": 1, "kto": 0}
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["kto.jsonl", "pairs.jsonl", "prompts.jsonl", "sft.jsonl"]
    assert [row["source"] for row in read_jsonl(tmp_path / "out" / "pairs.jsonl")] == ["ranking", "demonstration"]
    assert read_jsonl(tmp_path / "out" / "prompts.jsonl") == [{"prompt": [{"role": "user", "content": "Q"}]}]
