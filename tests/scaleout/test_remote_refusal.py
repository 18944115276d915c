"""vLLM's refusal of a request (a 4xx) comes back as its ErrorResponse from the first replica:
not retried elsewhere, and the replica stays in rotation."""

from tests.scaleout.fake_replicas import FakeReplica, chat_request, run_with_engine


def test_refusal_is_passed_back_not_retried():
    a, b = FakeReplica("http://a:8000"), FakeReplica("http://b:8000")

    async def scenario(engine):
        result = await engine.chat(chat_request(max_tokens=1000, stream=True))
        return result, [r.up for r in engine.replicas]

    result, up = run_with_engine([a, b], scenario)

    assert (result.error.code, result.error.message) == (400, "max_tokens is too large")
    assert up == [True, True]
