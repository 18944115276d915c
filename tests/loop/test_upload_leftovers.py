"""What an upload left behind (an app killed mid-upload) is deleted when the app starts, before each
upload and by a round's clean-up; the folder of an upload still being received is left alone."""

from loop.trainer_api import build_trainer_api
from serving.api import Auth
from storage.archive import held_folder
from storage.store import FeedbackStore


def test_leftovers_go_and_an_upload_in_progress_stays(tmp_path):
    adapters = tmp_path / "adapters"
    (adapters / ".upload-0123456789ab").mkdir(parents=True)
    (adapters / ".upload-0123456789ab" / "upload.tar").write_bytes(b"half")
    (adapters / ".upload-ba9876543210.tar").write_bytes(b"half")  # what earlier versions left
    (adapters / "1").mkdir()
    store = FeedbackStore.open(tmp_path)

    with held_folder(adapters, ".upload-") as receiving:
        build_trainer_api(store=store, auth=Auth({}), data_dir=tmp_path, base_model="m")
        assert sorted(p.name for p in adapters.iterdir()) == sorted(["1", receiving.name])
        store.registry.remove_partial_rounds()
        assert sorted(p.name for p in adapters.iterdir()) == sorted(["1", receiving.name])

    assert [p.name for p in adapters.iterdir()] == ["1"]
