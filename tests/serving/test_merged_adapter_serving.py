"""On the real engine: the merged adapter really is merged (the worker reports it and skips its LoRA
slot), and whatever is merged, greedy answers of the base model and of two adapters requested
together in one batch equal each version's answer served alone with nothing merged."""

import asyncio

from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

from serving.backend import adapter_name

QUESTION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]
A, B = 3001, 3002  # the session engine is shared: other tests use v1, v1001, v2001...


async def answer(engine, name: str) -> str:
    request = ChatCompletionRequest(model=name, messages=QUESTION, temperature=0, max_tokens=6)
    return (await engine.chat(request)).choices[0].message.content


async def together(engine, names: dict) -> dict:
    order = [v for v in names for _ in range(2)]
    texts = await asyncio.gather(*(answer(engine, names[v]) for v in order))
    return {v: sorted({t for t, w in zip(texts, order) if w == v}) for v in names}


async def worker_state(engine) -> dict:
    return (await engine.client.collective_rpc("merged_adapter_state"))[0]


def test_whatever_is_merged_every_version_answers_as_alone(engine_runner, random_adapter, tmp_path):
    engine = engine_runner.engine
    run = engine_runner.run
    run(engine.load_adapter(A, random_adapter(tmp_path / "a", seed=1)))
    run(engine.load_adapter(B, random_adapter(tmp_path / "b", seed=2)))
    names = {None: engine.base_name, A: adapter_name(A), B: adapter_name(B)}
    lora_id = {v: engine.serving_models.lora_requests[n].lora_int_id for v, n in names.items()}
    try:
        run(engine.merge(None))
        alone = {v: run(answer(engine, n)) for v, n in names.items()}
        assert len(set(alone.values())) == 3  # the three versions are told apart by their answers

        for merged in (A, B, None, A):
            run(engine.merge(merged))
            got = run(together(engine, names))
            state = run(worker_state(engine))

            assert engine.merged == merged
            assert state["merged"] == (None if merged is None else lora_id[merged])
            assert got == {v: [alone[v]] for v in names}, f"merged {merged}"
            merged_slot = state["slots"].index(lora_id[merged])  # the merged version's LoRA adds nothing
            assert merged_slot in state["skip_slots"]
    finally:
        run(engine.merge(None))
