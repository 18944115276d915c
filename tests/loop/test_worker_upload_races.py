"""A round registers at most one candidate, and only while it runs: the upload checks the round
again in the transaction that registers the candidate (a round can time out, be reported failed or
get a second upload while the first is being checked)."""

from loop import trainer_api
from tests.loop.test_worker_upload_checks import round_tar, worker_round


def test_a_round_that_failed_during_the_upload_gets_no_candidate(tmp_path, monkeypatch):
    store, client, url, round_id = worker_round(tmp_path)
    check = trainer_api.check_candidate

    def round_times_out_meanwhile(path, *, base_model):
        store.round_lock.finish_round(round_id, error="The worker was silent for an hour.")
        return check(path, base_model=base_model)

    monkeypatch.setattr(trainer_api, "check_candidate", round_times_out_meanwhile)
    response = client.post(url, content=round_tar())

    assert response.status_code == 409 and "is failed, not running" in response.json()["error"]["message"]
    assert store.registry.adapters() == []
    assert store.round_lock.round(round_id).error == "The worker was silent for an hour."
    assert list((tmp_path / "adapters").iterdir()) == []


def test_two_uploads_to_one_round_register_one_candidate(tmp_path, monkeypatch):
    store, client, url, round_id = worker_round(tmp_path)
    check, second = trainer_api.check_candidate, {}

    def another_upload_meanwhile(path, *, base_model):
        if "started" not in second:  # the first upload only: the second one runs through
            second["started"] = True
            second["response"] = client.post(url, content=round_tar())
        return check(path, base_model=base_model)

    monkeypatch.setattr(trainer_api, "check_candidate", another_upload_meanwhile)
    first = client.post(url, content=round_tar())

    assert (second["response"].status_code, first.status_code) == (201, 409)
    assert "already registered candidate v1" in first.json()["error"]["message"]
    assert [a.version for a in store.registry.adapters()] == [1]
    finished = store.round_lock.round(round_id)
    assert (finished.status, finished.adapter_version) == ("succeeded", 1)
    assert [p.name for p in (tmp_path / "adapters").iterdir()] == ["1"]
