"""When one evaluation answer fails (the engine refuses its prompt), the route answers with that error and
no other answer of the call is still running: the rest are cancelled (vLLM aborts them) and have ended
before the candidate loaded for the call is unloaded. A scripted engine stands in for vLLM."""

import asyncio
from types import SimpleNamespace

import pytest
from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest  # noqa: F401 imported here,
# not inside the test's deadline: the sampler imports it on its first answer, seconds on a loaded machine

from serving.api import ApiError
from serving.eval_sampling import EvalSampler, EvalSamplesBody

PROMPTS, N = 6, 4
REFUSED_SEED = 5  # answer 1 of prompt 1


class RefusingEngine:
    """Refuses one answer at once; every other answer takes far longer than the test."""

    served_name = "base"

    def __init__(self):
        self.in_flight = self.finished = self.cancelled = 0
        self.in_flight_at_unload = None
        self.loaded = []

    async def load_lora(self, name, path):
        self.loaded.append(name)

    async def unload_lora(self, name):
        self.in_flight_at_unload = self.in_flight
        self.loaded.remove(name)

    async def chat(self, request):
        if request.seed == REFUSED_SEED:
            await asyncio.sleep(0.01)  # the others have started
            return SimpleNamespace(error=SimpleNamespace(message="This prompt is too long for the model."))
        self.in_flight += 1
        try:
            await asyncio.sleep(60)
            self.finished += 1
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1


def test_one_refused_answer_cancels_the_others_before_the_candidate_is_unloaded(tmp_path):
    adapters = tmp_path / "adapters"
    (adapters / ".tmp-abc").mkdir(parents=True)
    engine = RefusingEngine()
    sampler = EvalSampler(engine=engine, adapters=None, adapters_dir=adapters, default_max_tokens=16,
                          max_tokens_limit=16)
    body = EvalSamplesBody.model_validate({
        "model": {"candidate_dir": str(adapters / ".tmp-abc")}, "n": N, "seed": 0,
        "prompts": [[{"role": "user", "content": str(i)}] for i in range(PROMPTS)]})

    async def sample_with_deadline():
        # A deadline under the other answers' 60 s: a sampler that waited for them would fail here, not hang.
        # (Without the cancel the error came at once, with 23 answers still running at the unload.)
        return await asyncio.wait_for(sampler.sample(body), timeout=30)

    with pytest.raises(ApiError, match="too long") as refused:
        asyncio.run(sample_with_deadline())

    assert refused.value.status == 422
    assert engine.cancelled == PROMPTS * N - 1 and engine.finished == 0  # every other answer was stopped
    assert engine.in_flight_at_unload == 0  # none ran on the candidate as it was unloaded
    assert engine.loaded == []
