"""split_by_group holds out whole rankings: no group has pairs on both sides of the split."""

from __future__ import annotations

from align.data import split_by_group


def pairs(groups: dict[str, int]) -> list[dict]:
    return [{"group": group, "n": i} for group, size in groups.items() for i in range(size)]


def test_groups_never_straddle_the_split():
    rows = pairs({f"ranking:{g}": 3 for g in range(10)})  # ten rankings of three pairs (K = 3)

    train, held_out = split_by_group(rows, eval_fraction=0.2, seed=0)

    assert (len(train), len(held_out)) == (24, 6)
    assert {r["group"] for r in train} & {r["group"] for r in held_out} == set()


def test_split_depends_on_the_seed_not_the_row_order():
    rows = pairs({f"prompt:{g}": 1 for g in range(20)})

    _, held_out = split_by_group(rows, eval_fraction=0.25, seed=7)
    _, held_out_reversed = split_by_group(rows[::-1], eval_fraction=0.25, seed=7)

    assert len(held_out) == 5
    assert sorted(r["group"] for r in held_out) == sorted(r["group"] for r in held_out_reversed)


def test_one_big_group_stays_in_train():
    rows = pairs({"ranking:1": 6})

    assert split_by_group(rows, eval_fraction=0.5, seed=0) == (rows, [])


def test_zero_fraction_holds_nothing_out():
    rows = pairs({"ranking:1": 2, "ranking:2": 2})

    assert split_by_group(rows, eval_fraction=0.0, seed=0) == (rows, [])
