"""On the real engine: the merged adapter really is merged (the worker reports it and skips its LoRA
slot), and whatever is merged, greedy answers of the base model and of two adapters requested
together in one batch equal each version's answer served alone with nothing merged; base-model
requests that name no LoRA never run across a merge."""

import asyncio

from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

from serving.backend import adapter_name
from serving.engine import NULL_ADAPTER

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
    # The base model by its plain name: without a LoRA while nothing is merged, the null adapter otherwise.
    names = {None: engine.served_name, A: adapter_name(A), B: adapter_name(B)}
    lora_id = {v: engine.serving_models.lora_requests[NULL_ADAPTER if v is None else n].lora_int_id
               for v, n in names.items()}
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
            if merged is not None:
                merged_slot = state["slots"].index(lora_id[merged])  # the merged version's LoRA adds nothing
                assert merged_slot in state["skip_slots"]
    finally:
        run(engine.merge(None))


def test_a_merge_waits_while_the_old_version_has_more_requests_running(engine_runner, random_adapter, tmp_path):
    engine = engine_runner.engine
    run = engine_runner.run
    run(engine.load_adapter(A, random_adapter(tmp_path / "a", seed=1)))
    run(engine.merge(None))

    async def scenario():
        streams = [await engine.chat(ChatCompletionRequest(model=engine.base_name, messages=QUESTION, stream=True,
                                                           temperature=0, max_tokens=48, ignore_eos=True))
                   for _ in range(3)]
        first = [await anext(s) for s in streams]  # three base-model requests are running
        engine.activate(A)
        await engine.merge(A)
        deferred = engine.merged  # three old requests, none on A yet: merging now would slow all three
        for s in streams:
            async for _ in s:
                pass
        for _ in range(100):  # drained: the waiting merge goes ahead
            if engine.merged == A:
                break
            await asyncio.sleep(0.05)
        return first, deferred, engine.merged

    try:
        first, deferred, merged = run(scenario())
        assert all(first) and deferred is None and merged == A
    finally:
        engine.activate(None)
        run(engine.merge(None))


def test_plain_base_requests_finish_before_anything_is_merged(engine_runner, random_adapter, tmp_path):
    """While nothing is merged, base-model requests name no LoRA, as on plain vLLM. Such a request runs on
    whatever is in the weights, so a merge waits for the last of them (even when the new version has more
    requests running), and a base-model request that starts meanwhile takes the null adapter."""
    engine = engine_runner.engine
    run = engine_runner.run
    run(engine.load_adapter(A, random_adapter(tmp_path / "a", seed=1)))
    run(engine.merge(None))
    engine.activate(None)
    assert engine.active.name == engine.served_name

    def streaming(name: str) -> ChatCompletionRequest:
        return ChatCompletionRequest(model=name, messages=QUESTION, stream=True, temperature=0, max_tokens=48,
                                     ignore_eos=True)

    async def scenario():
        plain = await engine.chat(streaming(engine.active.name))
        await anext(plain)
        engine.activate(A)
        on_a = [await engine.chat(streaming(adapter_name(A))) for _ in range(2)]
        for s in on_a:
            await anext(s)
        await engine.merge(A)  # two on A, one on the base model: worth merging, but not yet possible
        await asyncio.sleep(0.2)
        waited = engine.merged
        late = ChatCompletionRequest(model=engine.served_name, messages=QUESTION, temperature=0, max_tokens=4)
        await engine.chat(late)
        for s in [plain, *on_a]:
            async for _ in s:
                pass
        for _ in range(100):
            if engine.merged == A:
                break
            await asyncio.sleep(0.05)
        return waited, late.model, engine.merged

    try:
        waited, late_name, merged = run(scenario())
        assert (waited, late_name, merged) == (None, NULL_ADAPTER, A)
    finally:
        engine.activate(None)
        run(engine.merge(None))
    assert engine.active.name == engine.served_name  # nothing merged: the base model is plain again
