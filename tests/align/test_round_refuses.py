"""A round with too little data, a damaged row or a failing stage says why, registers nothing,
leaves no files behind and leaves earlier adapters alone."""

from types import SimpleNamespace

import pytest

from align.round import RoundError, Stages, run_round
from align.stage_configs import RoundConfig
from storage.store import FeedbackStore

from bench.tiny import store_with_pairs

SFT = SimpleNamespace(min_demonstrations=100)
RM = SimpleNamespace(eval_fraction=0.2, max_pairs=0)


def failing_stages(message="RM exploded"):
    def boom(**kwargs):
        (kwargs["out_dir"]).mkdir(parents=True)
        (kwargs["out_dir"] / "half-written.bin").write_bytes(b"x")
        raise RuntimeError(message)

    return Stages(train_sft=boom, train_reward_model=boom, reward_scorer=None,
                  split_pairs=lambda rows, eval_fraction, seed: (rows, rows[:1]))


def existing_adapter(store, tmp_path):
    path = tmp_path / "adapters" / "1"
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text("{}")
    version = store.registry.register_adapter(path=str(path), base_model="base")
    store.registry.set_adapter_status(version, "active")
    return path


def leftovers(tmp_path):
    return sorted(p.name for p in (tmp_path / "adapters").iterdir())


def test_too_little_data(tmp_path):
    store = FeedbackStore.open(tmp_path)
    with pytest.raises(RoundError, match="Too little feedback"):
        run_round(store=store, data_dir=tmp_path, cfg=RoundConfig(), sft_cfg=SFT, rm_cfg=RM, ppo_cfg=None,
                  stages=failing_stages())
    assert store.registry.adapters() == []


def test_failing_stage_registers_nothing(tmp_path, model_path):
    store = store_with_pairs(tmp_path, 30)
    kept = existing_adapter(store, tmp_path)
    cfg = RoundConfig(model=model_path, min_pairs=4, min_prompts=4, eval_prompts=4)
    with pytest.raises(RuntimeError, match="RM exploded"):
        run_round(store=store, data_dir=tmp_path, cfg=cfg, sft_cfg=SFT, rm_cfg=RM, ppo_cfg=None,
                  stages=failing_stages(), progress=lambda *_, **__: None)
    assert [(a.version, a.status) for a in store.registry.adapters()] == [(1, "active")]
    assert leftovers(tmp_path) == ["1"]
    assert (kept / "adapter_config.json").read_text() == "{}"


def test_damaged_row_is_a_clear_error(tmp_path):
    store = store_with_pairs(tmp_path, 30)
    store.db.execute("UPDATE messages SET sampling = '{not json' WHERE id = 2")
    store.db.conn.commit()
    with pytest.raises(RoundError, match="could not be read"):
        run_round(store=store, data_dir=tmp_path, cfg=RoundConfig(min_pairs=4, min_prompts=4, eval_prompts=4),
                  sft_cfg=SFT, rm_cfg=RM, ppo_cfg=None, stages=failing_stages(), progress=lambda *_, **__: None)
    assert store.registry.adapters() == []
