"""A restart on the real engine when the adapter that served is gone and the one served before it is
corrupt: the app says why on each adapter (status 'failed' with the reason the admin tab shows), falls
back to the base model, and serves."""

import shutil
from pathlib import Path

import httpx

from storage import FeedbackStore
from bench.common import AppProcess

SERVED_NAME = "SmolLM2-135M-Instruct"


def broken_history(data_dir: Path, random_adapter) -> tuple[int, int]:
    """v1 served, then v2 (active at the 'crash'); then v2's files are deleted and v1's weights damaged."""
    good = random_adapter(data_dir / "good-adapter")
    store = FeedbackStore.open(data_dir)
    versions = []
    for version in (1, 2):
        path = data_dir / "adapters" / str(version)
        shutil.copytree(good, path)
        versions.append(store.registry.register_adapter(path=str(path), base_model=SERVED_NAME))
        store.registry.set_adapter_status(versions[-1], "active")
    store.close()
    shutil.rmtree(data_dir / "adapters" / "2")
    weights = data_dir / "adapters" / "1" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return versions[0], versions[1]


def test_the_app_falls_back_to_the_base_model_and_says_why(model_path, random_adapter, tmp_path):
    served_before, active = broken_history(tmp_path, random_adapter)
    app = AppProcess(data_dir=tmp_path, model_path=model_path, extra=["--max-tokens", "4"])
    try:
        app.wait_ready()
        health = httpx.get(app.url + "/healthz").json()
        chat = httpx.post(app.url + "/v1/chat/completions", timeout=120,
                          json={"messages": [{"role": "user", "content": "Hi"}]})
        adapters = {a["version"]: a for a in httpx.get(app.url + "/api/adapters").json()["data"]}
    finally:
        app.stop()

    assert health["adapter_version"] is None and chat.status_code == 200 and chat.json()["adapter_version"] is None
    assert (adapters[active]["status"], adapters[served_before]["status"]) == ("failed", "failed")
    assert adapters[active]["error"].startswith(f"Adapter v{active} is incomplete: adapter_config.json")
    assert adapters[served_before]["error"].startswith(f"vLLM could not load adapter v{served_before}")
    assert "Could not restore adapter v2" in app.log() and "serving the base model" in app.log()
