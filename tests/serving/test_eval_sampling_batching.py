"""The engine's evaluation sampling keeps its batch full: one request per answer, at most
CONCURRENT_ANSWERS in flight, a new one starting as soon as any answer ends (a prompt's long answer does
not hold the slots of its short ones), each with a seed of its own, and the answers come back grouped by
prompt in order. A scripted engine stands in for vLLM: only the scheduling is under test here
(tests/serving/test_eval_sampling.py samples with the real one)."""

import asyncio
from types import SimpleNamespace

from serving.eval_sampling import CONCURRENT_ANSWERS, EvalSampler, EvalSamplesBody

PROMPTS, N = 20, 4  # 80 answers: more than one batch's worth


class ScriptedEngine:
    """Answers after a delay set by the answer: the first answer of every prompt is slow, the rest quick."""

    served_name = "base"

    def __init__(self):
        self.in_flight = self.most_in_flight = self.slow_in_flight = 0
        self.requests = []
        self.started_while_slow_ones_ran = 0

    async def chat(self, request):
        self.requests.append(request)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        slow = request.seed % N == 0
        if slow:
            self.slow_in_flight += 1
        elif self.slow_in_flight:  # a slot freed by a quick answer went on while a slow one still ran
            self.started_while_slow_ones_ran += 1
        await asyncio.sleep(0.05 if slow else 0.001)
        self.in_flight -= 1
        self.slow_in_flight -= slow
        prompt = int(request.messages[0]["content"])
        text = f"prompt {prompt} seed {request.seed}"
        return SimpleNamespace(prompt_token_ids=[prompt], choices=[SimpleNamespace(
            message=SimpleNamespace(content=text), token_ids=[request.seed], finish_reason="stop")])


def test_answers_are_sampled_one_request_each_with_the_batch_kept_full():
    engine = ScriptedEngine()
    sampler = EvalSampler(engine=engine, adapters=None, adapters_dir="/nonexistent", default_max_tokens=16,
                          max_tokens_limit=16)
    body = EvalSamplesBody.model_validate({
        "model": {"version": None}, "n": N, "seed": 100,
        "prompts": [[{"role": "user", "content": str(i)}] for i in range(PROMPTS)]})

    reply = asyncio.run(sampler.sample(body))

    assert len(engine.requests) == PROMPTS * N and {r.n for r in engine.requests} == {1}
    assert engine.most_in_flight == CONCURRENT_ANSWERS  # full, never more
    seeds = [r.seed for r in engine.requests]
    assert sorted(seeds) == list(range(100, 100 + PROMPTS * N))  # one seed per answer
    # Quick answers of later prompts ran while the slow ones held their slots.
    assert engine.started_while_slow_ones_ran > PROMPTS * (N - 1) // 2
    for i, prompt in enumerate(reply["prompts"]):
        assert prompt["prompt_token_ids"] == [i]
        assert [a["token_ids"] for a in prompt["answers"]] == [[100 + i * N + j] for j in range(N)]
