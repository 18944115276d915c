"""register_candidate: a finished round becomes a new adapters/<version>/ and a candidate row in one
step; a directory already named like the new version is never deleted or reused, metrics the gate
cannot judge are refused, and a round registers one candidate, only while it runs."""

import pytest

from align.round import RoundError, register_candidate
from storage import Conflict, FeedbackStore
from storage.process import current_process

JUDGED = {"mean_reward": 0.2, "kl_to_base": 0.1, "degenerate_fraction": 0.0}
METRICS = {"evaluation": {"candidate": JUDGED, "reference": JUDGED, "reference_version": None, "reward_gain": 0.0,
                          "reward_gain_interval": [-0.1, 0.1], "interval_confidence": 0.95, "eval_prompts": 32,
                          "answers_per_prompt": 4},
           "reward_model": {"held_out_accuracy": 0.7, "held_out_pairs": 40}, "timings_s": {"ppo": 1.0}}


def finished_round(tmp_path, name=".tmp-round"):
    tmp = tmp_path / "adapters" / name
    tmp.mkdir(parents=True)
    (tmp / "adapter_config.json").write_text("{}")
    return tmp


def register(store, tmp, tmp_path, *, metrics=METRICS, round_id=None):
    return register_candidate(store, tmp, base_model="m", parent_version=None, data_record={}, metrics=metrics,
                              round_id=round_id)


def test_an_existing_folder_of_that_version_is_kept_and_a_fresh_name_used(tmp_path):
    store = FeedbackStore.open(tmp_path)  # say, a backup restored after adapters/1 was trained
    kept = tmp_path / "adapters" / "1"
    kept.mkdir(parents=True)
    (kept / "adapter_model.safetensors").write_text("served by the newer database")

    version = register(store, finished_round(tmp_path), tmp_path)

    path = store.registry.adapter(version).path
    assert version == 1 and path.startswith(str((tmp_path / "adapters" / "1-").resolve()))
    assert (kept / "adapter_model.safetensors").read_text() == "served by the newer database"
    assert sorted(p.name for p in (tmp_path / "adapters").iterdir()) == ["1", path.rsplit("/", 1)[1]]


def test_metrics_the_gate_cannot_judge_are_refused(tmp_path):
    store = FeedbackStore.open(tmp_path)
    evaluation = {**METRICS["evaluation"], "candidate": {**JUDGED, "kl_to_base": "low"}}
    tmp = finished_round(tmp_path)
    with pytest.raises(RoundError, match="The candidate's kl_to_base is 'low', not a number."):
        register(store, tmp, tmp_path, metrics={**METRICS, "evaluation": evaluation})
    assert store.registry.adapters() == [] and tmp.is_dir()


def test_a_round_registers_one_candidate_and_ends_with_it(tmp_path):
    store = FeedbackStore.open(tmp_path)
    claimed = store.round_lock.claim_round(trigger="cli", process=current_process())
    version = register(store, finished_round(tmp_path, ".tmp-a"), tmp_path, round_id=claimed.id)
    finished = store.round_lock.round(claimed.id)
    assert (finished.status, finished.adapter_version) == ("succeeded", version)

    with pytest.raises(Conflict, match=f"Round {claimed.id} already registered candidate v{version}"):
        register(store, finished_round(tmp_path, ".tmp-b"), tmp_path, round_id=claimed.id)
    assert [a.version for a in store.registry.adapters()] == [version]
