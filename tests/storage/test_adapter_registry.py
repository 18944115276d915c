"""AdapterRegistry owns DATA_DIR/adapters/: what a version's folder must hold (one list), registering a
round's folder as a new version, and pruning that never touches what serves, what served before it, or
folders outside this data directory's adapters/."""

import pytest

from storage import FeedbackStore
from storage.adapters import ADAPTER_FILES
from storage.errors import IncompleteAdapter

GATE_SUMMARY = {"reward_gain": 0.1}


@pytest.fixture
def store(tmp_path):
    return FeedbackStore.open(tmp_path)


def round_dir(store, *files):
    folder = store.registry.new_round_dir()
    for name in files:
        (folder / name).write_text("{}")
    return folder


def version(store, *files):
    folder = round_dir(store, *files)
    return store.registry.register_dir(folder, base_model="m", parent_version=None, data={},
                                       metrics=GATE_SUMMARY, round_id=None)


def test_a_version_needs_its_config_and_one_weights_file():
    assert ADAPTER_FILES == ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


def test_a_version_missing_its_weights_file_is_refused_with_a_sentence(store, tmp_path):
    v = version(store, "adapter_config.json")
    with pytest.raises(IncompleteAdapter, match=r"^Adapter v1 is incomplete: adapter_model.safetensors missing in "):
        store.registry.check_files(store.registry.adapter(v))


def test_older_bin_weights_are_accepted(store):
    v = version(store, "adapter_config.json", "adapter_model.bin")
    store.registry.check_files(store.registry.adapter(v))


def test_registering_a_round_moves_its_folder_into_adapters_version(store, tmp_path):
    folder = round_dir(store, "adapter_config.json", "adapter_model.safetensors")
    assert folder.parent == tmp_path / "adapters" and folder.name.startswith(".tmp-")

    v = store.registry.register_dir(folder, base_model="m", parent_version=None, data={"pairs": 4},
                                    metrics=GATE_SUMMARY, round_id=None)

    adapter = store.registry.adapter(v)
    assert (v, adapter.status, adapter.path) == (1, "candidate", str((tmp_path / "adapters" / "1").resolve()))
    assert sorted(p.name for p in (tmp_path / "adapters").iterdir()) == ["1"]
    assert (tmp_path / "adapters" / "1" / "adapter_model.safetensors").is_file()


def test_prune_keeps_the_active_version_and_its_predecessor(store, tmp_path):
    v1, v2, v3, v4 = (version(store, "adapter_config.json", "adapter_model.safetensors") for _ in range(4))
    for v in (v1, v2, v3, v4):
        store.registry.set_adapter_decision(v, promote=v in (v2, v3), reasons=["by test"], by="gate")
    store.registry.set_adapter_status(v2, "active")
    store.registry.set_adapter_status(v3, "active")

    assert store.registry.prune(retention=0) == [v1, v4]
    assert sorted(p.name for p in (tmp_path / "adapters").iterdir()) == ["2", "3"]
    assert [a.pruned_at is not None for a in store.registry.adapters()] == [True, False, False, True]


def test_prune_leaves_folders_outside_this_data_dirs_adapters(store, tmp_path):
    elsewhere = tmp_path.parent / f"{tmp_path.name}-other" / "adapters" / "1"
    elsewhere.mkdir(parents=True)
    outside = store.registry.register_adapter(path=str(elsewhere), base_model="m")
    store.registry.set_adapter_decision(outside, promote=False, reasons=["worse"], by="gate")

    assert store.registry.prune(retention=0) == []
    assert elsewhere.is_dir() and store.registry.adapter(outside).pruned_at is None
