"""RewardConfig.max_pairs: the reward model trains on the pairs of the newest feedback, whole rankings at a
time, and the round records how many pairs there were and how many it used."""

import pytest

from align.data import newest_groups
from align.round import data_record, round_data
from align.stage_configs import RoundConfig


def pairs(group, n, created_at):
    """n pairs of one group, shaped like storage.export.preference_pairs rows."""
    return [{"prompt": [{"role": "user", "content": f"{group}?"}],
             "chosen": [{"role": "assistant", "content": f"good {i}"}],
             "rejected": [{"role": "assistant", "content": f"bad {i}"}],
             "group": group, "source": "ranking", "created_at": created_at} for i in range(n)]


def groups(rows):
    return [row["group"] for row in rows]


OLD, MID, NEW = "2025-01-01T00:00:01.000+00:00", "2025-01-02T00:00:01.000+00:00", "2025-01-03T00:00:01.000+00:00"


def test_the_newest_groups_are_kept_and_rows_keep_their_order():
    rows = pairs("ranking:1", 3, OLD) + pairs("ranking:2", 3, NEW) + pairs("ranking:3", 3, MID)
    assert groups(newest_groups(rows, max_pairs=6)) == ["ranking:2"] * 3 + ["ranking:3"] * 3


def test_a_group_is_never_split_and_no_older_group_fills_the_gap():
    rows = pairs("ranking:1", 1, OLD) + pairs("ranking:2", 6, MID) + pairs("ranking:3", 3, NEW)
    # 3 + 6 would pass 7: ranking:2 is left out whole, and the older ranking:1 (which would fit) with it
    assert groups(newest_groups(rows, max_pairs=7)) == ["ranking:3"] * 3


def test_the_newest_group_is_kept_even_when_it_alone_is_over_the_cap():
    rows = pairs("ranking:1", 2, OLD) + pairs("ranking:2", 6, NEW)  # a ranking of 4 gives 6 pairs
    assert groups(newest_groups(rows, max_pairs=4)) == ["ranking:2"] * 6


def test_a_group_is_as_new_as_its_newest_pair():
    # thumbs and a rewrite on one prompt share a group but sit apart in the export (thumbs before rewrites)
    rows = pairs("prompt:7", 2, OLD) + pairs("ranking:1", 2, MID) + pairs("prompt:7", 1, NEW)
    assert groups(newest_groups(rows, max_pairs=3)) == ["prompt:7"] * 3


def test_equal_times_go_to_the_group_later_in_the_export():
    rows = pairs("ranking:1", 2, OLD) + pairs("ranking:2", 2, OLD) + pairs("ranking:3", 2, OLD)
    assert groups(newest_groups(rows, max_pairs=4)) == ["ranking:2"] * 2 + ["ranking:3"] * 2


def test_cap_zero_or_above_the_count_keeps_every_pair():
    rows = pairs("ranking:1", 3, OLD) + pairs("ranking:2", 3, NEW)
    assert newest_groups(rows, max_pairs=0) == rows
    assert newest_groups(rows, max_pairs=6) == rows


def test_a_negative_cap_is_refused():
    with pytest.raises(ValueError, match="max_pairs"):
        newest_groups(pairs("ranking:1", 1, OLD), max_pairs=-1)


def test_the_round_records_pairs_available_and_used():
    feedback = {"pairs": pairs("ranking:1", 6, OLD) + pairs("ranking:2", 3, NEW) + pairs("ranking:3", 1, MID),
                "prompts": [[{"role": "user", "content": f"Q{i}"}] for i in range(4)],
                "demonstrations": [], "newest_feedback_id": {"vote": 0, "ranking": 3, "demonstration": 0}}
    cfg = RoundConfig(min_pairs=4, min_prompts=2, eval_prompts=2)

    data = round_data(feedback, cfg, max_pairs=5)

    assert groups(data.pairs) == ["ranking:2"] * 3 + ["ranking:3"]
    assert data_record(data) == {"pairs": 10, "pairs_used": 4, "demonstrations": 0, "thumbs": 0, "train_prompts": 2,
                                 "eval_prompts": 2, "newest_feedback_id": feedback["newest_feedback_id"]}
    assert round_data(feedback, cfg, max_pairs=0).counts()["pairs_used"] == 10
