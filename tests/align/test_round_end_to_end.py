"""A full round on a small DB (SFT -> RM -> PPO -> evaluation) registers a candidate whose adapter
the real vLLM engine loads and serves."""

import json
from pathlib import Path

from align.config import RewardConfig, SFTConfig
from align.ppo import PPOConfig
from align.round import run_round
from align.stage_configs import RoundConfig
from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

from bench.tiny import store_with_pairs


def tiny_round_configs(model_path):
    # The real default model, with every stage cut down to seconds.
    return dict(
        cfg=RoundConfig(model=model_path, min_pairs=4, min_prompts=4, eval_prompts=4, eval_max_new_tokens=12),
        sft_cfg=SFTConfig(min_demonstrations=2, epochs=1, max_length=512),
        rm_cfg=RewardConfig(min_pairs=4, epochs=1, max_length=128, eval_fraction=0.2),
        ppo_cfg=PPOConfig(total_episodes=4, batch_size=4, mini_batch_size=2, epochs=1, max_new_tokens=12),
    )


def test_round_registers_a_servable_candidate(tmp_path, model_path, engine_runner):
    store = store_with_pairs(tmp_path, 24)

    version = run_round(store=store, data_dir=tmp_path, progress=lambda *_, **__: None, **tiny_round_configs(model_path))

    adapter = store.registry.adapter(version)
    path = Path(adapter.path)
    metrics = json.loads((path / "metrics.json").read_text())
    assert (version, adapter.status, adapter.parent_version) == (1, "candidate", None)
    assert {"adapter_config.json", "adapter_model.safetensors", "value_head.pt", "metrics.json"} <= \
        {p.name for p in path.iterdir()}
    assert (path / "reward_model").is_dir() and (path / "sft").is_dir()
    assert adapter.data["pairs"] == 24 + 2 and adapter.data["demonstrations"] == 2  # rankings + rewrites
    assert set(adapter.metrics["candidate"]) >= {"mean_reward", "kl_to_base", "mean_length", "degenerate_fraction"}
    assert len(metrics["ppo_steps"]) == 1 and {"reward", "kl", "beta", "entropy"} <= set(metrics["ppo_steps"][0])
    assert [p.name for p in (tmp_path / "adapters").iterdir()] == ["1"]  # no temporary dir left

    engine = engine_runner.engine
    engine_runner.run(engine.load_adapter(version, str(path)))
    adapter_reply, base_reply = (served(engine_runner, model) for model in (f"adapter-v{version}", engine.served_name))
    assert adapter_reply.message.content
    # The engine really applies the trained adapter: its token log-probs differ from the base model's.
    assert logprobs(adapter_reply) != logprobs(base_reply)


def served(engine_runner, model: str):
    request = ChatCompletionRequest(model=model, max_tokens=8, temperature=0, logprobs=True,
                                    messages=[{"role": "user", "content": "Hello!"}])
    return engine_runner.run(engine_runner.engine.chat(request)).choices[0]


def logprobs(choice) -> list[tuple[str, float]]:
    return [(t.token, round(t.logprob, 4)) for t in choice.logprobs.content]
