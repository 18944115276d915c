"""Retention deletes only folders inside this data directory's adapters/: a database restored from
another installation (or pointing through a symlink) names folders that are not ours to delete."""

from serving.adapters import AdapterConfig, AdapterManager
from tests.serving.test_adapter_manager import FakeEngine, adapter, store  # noqa: F401 (fixture)


def test_an_adapter_folder_outside_the_data_dir_is_not_deleted(store, tmp_path):
    elsewhere = tmp_path.parent / f"{tmp_path.name}-other-install" / "adapters" / "1"
    elsewhere.mkdir(parents=True)
    (elsewhere / "adapter_model.safetensors").write_text("another install serves this")
    outside = store.registry.register_adapter(path=str(elsewhere), base_model="m")
    linked = adapter(store, tmp_path)
    (tmp_path / "adapters" / "2").rename(tmp_path / "adapters" / "2-real")
    (tmp_path / "adapters" / "2").symlink_to(elsewhere)
    inside = adapter(store, tmp_path)
    for v in (outside, linked, inside):
        store.registry.set_adapter_decision(v, promote=False, reasons=["worse"], by="gate")

    pruned = AdapterManager(engine=FakeEngine(), store=store, cfg=AdapterConfig(retention=0)).prune()

    assert pruned == [inside]
    assert (elsewhere / "adapter_model.safetensors").read_text() == "another install serves this"
    assert not (tmp_path / "adapters" / "3").exists()
    assert store.registry.adapter(outside).pruned_at is None
