"""The export's size is known from COUNT queries before it is built: exact when every answer is
usable and every prompt distinct, never below the real count."""

from storage.export import export_datasets, export_size_bound


def rows(store):
    return sum(len(dataset) for dataset in export_datasets(store).values())


def test_the_count_is_exact_for_distinct_usable_feedback(store, ask):
    _, (a, b, c) = ask("Q1", ["a", "b", "c"])
    store.record_ranking(user="alice", response_ids=[a, b, c])  # 3 pairs
    _, (up, down, other) = ask("Q2", ["up", "down", "other"])
    store.record_vote(response_id=up, user="alice", rating=1)
    store.record_vote(response_id=down, user="alice", rating=-1)
    store.record_vote(response_id=other, user="alice", rating=-1)  # 2 thumbs pairs
    _, (alone,) = ask("Q3", ["alone"])
    store.record_vote(response_id=alone, user="alice", rating=1)  # 1 unpaired (KTO) row
    store.record_demonstration(response_id=a, user="alice", content="better")  # 1 pair and 1 SFT row

    assert export_size_bound(store) == rows(store) == (3 + 2 + 1) + 3 + 1 + 1  # pairs, prompts, sft, kto


def test_the_count_is_never_below_the_export(store, ask):
    ask("Same")
    ask("Same")  # one prompt in the export, two user messages counted
    _, (empty, b) = ask("Q", ["", "b"])  # an empty answer is not training data
    store.record_ranking(user="alice", response_ids=[empty, b])
    store.record_vote(response_id=b, user="alice", rating=1)
    store.record_vote(response_id=b, user="alice", rating=-1)  # only the latest vote counts

    assert export_size_bound(store) == rows(store) + 2  # the repeated prompt and the empty answer's pair
