"""The app registers a worker's upload only when it is a complete adapter for the base model it
serves, with the metrics the gate reads; a refused upload fails the round and registers nothing."""

import io
import json
import tarfile

import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from safetensors.torch import save

from loop.trainer_api import build_trainer_api
from serving.api import Auth, install_error_handlers
from storage.store import FeedbackStore

BASE = "SmolLM2-135M-Instruct"
METRICS = {"evaluation": {"candidate": {"mean_reward": 0.2, "kl_to_base": 0.1, "degenerate_fraction": 0.0,
                                        "samples": []},
                          "reference": {"mean_reward": 0.1, "kl_to_base": 0.0, "degenerate_fraction": 0.0},
                          "reference_version": None, "reward_gain": 0.1, "reward_gain_interval": [0.05, 0.15],
                          "interval_confidence": 0.95, "eval_prompts": 32, "answers_per_prompt": 4},
           "reward_model": {"held_out_accuracy": 0.7, "held_out_pairs": 40}, "timings_s": {"ppo": 1.0},
           "data": {"pairs": 8, "newest_feedback_id": {"vote": 3}}}


def round_tar(*, base: str = f"/models/{BASE}", weights: bytes | None = None, metrics=METRICS) -> bytes:
    files = {"adapter_config.json": json.dumps({"base_model_name_or_path": base, "r": 8}).encode(),
             "adapter_model.safetensors": save({"lora_A": torch.zeros(8, 4)}) if weights is None else weights,
             "metrics.json": json.dumps(metrics).encode()}
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def worker_round(data_dir):
    """The scale-out routes over a store in data_dir, and a round a (made-up) remote worker has claimed:
    (store, client, the round's upload path, round id)."""
    store = FeedbackStore.open(data_dir)
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(build_trainer_api(store=store, auth=Auth({}), data_dir=data_dir,
                                          base_model=BASE))
    client = TestClient(app)
    round_id = client.post("/api/align/worker/rounds", json={"host": "gpu-box", "pid": 1}).json()["round"]["id"]
    return store, client, f"/api/align/worker/rounds/{round_id}/adapter", round_id


def upload(tmp_path, tar: bytes):
    store, client, upload_path, round_id = worker_round(tmp_path)
    response = client.post(upload_path, content=tar)
    return (response, store.round_lock.round(round_id), store.registry.adapters(),
            sorted(p.name for p in (tmp_path / "adapters").iterdir()))


def test_complete_upload_becomes_a_candidate(tmp_path):
    response, finished, adapters, files = upload(tmp_path, round_tar())

    assert response.status_code == 201 and response.json() == {"version": 1, "status": "candidate"}
    assert (finished.status, finished.adapter_version, finished.trigger) == ("succeeded", 1, "worker")
    assert (adapters[0].base_model, adapters[0].metrics["reward_gain"]) == (BASE, 0.1)
    assert adapters[0].data["newest_feedback_id"] == {"vote": 3}
    assert files == ["1"]


def test_other_base_model_is_refused(tmp_path):
    response, finished, adapters, files = upload(tmp_path, round_tar(base="/models/Qwen2.5-0.5B"))

    assert response.status_code == 400 and "trained on '/models/Qwen2.5-0.5B'" in response.json()["error"]["message"]
    assert finished.status == "failed" and adapters == [] and files == []


def test_truncated_weights_are_refused(tmp_path):
    weights = save({"lora_A": torch.zeros(8, 4)})[:-10]
    response, finished, adapters, files = upload(tmp_path, round_tar(weights=weights))

    assert response.status_code == 400 and "truncated" in response.json()["error"]["message"]
    assert finished.status == "failed" and adapters == [] and files == []


def test_metrics_without_evaluation_are_refused(tmp_path):
    response, finished, adapters, files = upload(tmp_path, round_tar(metrics={"data": {}}))

    assert response.status_code == 400 and "metrics.json is incomplete" in response.json()["error"]["message"]
    assert finished.status == "failed" and adapters == [] and files == []


def test_metrics_the_gate_cannot_compare_are_refused(tmp_path):
    evaluation = {**METRICS["evaluation"], "candidate": {**METRICS["evaluation"]["candidate"], "mean_reward": "0.2"}}
    response, finished, adapters, files = upload(tmp_path, round_tar(metrics={**METRICS, "evaluation": evaluation}))

    assert response.status_code == 400
    assert "The candidate's mean_reward is '0.2', not a number." in response.json()["error"]["message"]
    assert finished.status == "failed" and adapters == [] and files == []


def test_metrics_of_a_worker_that_evaluated_without_an_interval_are_refused(tmp_path):
    evaluation = {k: v for k, v in METRICS["evaluation"].items() if k != "reward_gain_interval"}
    response, finished, adapters, files = upload(tmp_path, round_tar(metrics={**METRICS, "evaluation": evaluation}))

    assert response.status_code == 400
    assert "evaluated without an interval on its reward gain; run a new round." in response.json()["error"]["message"]
    assert finished.status == "failed" and adapters == [] and files == []
