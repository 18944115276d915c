"""A second round, run while the first round's adapter serves, continues from it: the new candidate
records that adapter as its parent, is evaluated against it (the reference the gate compares with),
and KL is still measured to the base model (the served adapter's own KL is not that of itself, 0)."""

import json
from pathlib import Path

from align.round import run_round
from bench.tiny import store_with_pairs
from tests.align.test_round_end_to_end import tiny_round_configs


def test_a_second_round_continues_from_the_active_adapter(tmp_path, tiny_base):
    store = store_with_pairs(tmp_path / "data", 24)
    configs = tiny_round_configs(str(tiny_base))
    first = run_round(store=store, data_dir=tmp_path / "data", progress=lambda *_, **__: None, **configs)
    store.registry.set_adapter_status(first, "active")

    second = run_round(store=store, data_dir=tmp_path / "data", progress=lambda *_, **__: None, **configs)

    adapter = store.registry.adapter(second)
    evaluation = json.loads((Path(adapter.path) / "metrics.json").read_text())["evaluation"]
    assert (first, second, adapter.parent_version) == (1, 2, 1)
    assert adapter.metrics["reference_version"] == evaluation["reference_version"] == 1
    # v1 measured against the base model: a sampled estimate, near 0 for a tiny round, but never the exact
    # 0 of a model compared with itself.
    assert evaluation["reference"]["kl_to_base"] != 0
