"""A replica that stops answering is skipped (the request goes to another one before any byte
reached the client), and takes traffic again once a health check passes."""

from tests.scaleout.fake_replicas import FakeReplica, chat_request, run_with_engine


def test_down_replica_is_skipped_then_rejoins():
    a, b = FakeReplica("http://a:8000"), FakeReplica("http://b:8000")

    async def scenario(engine):
        a.down = True
        while_down = [(await engine.chat(chat_request(stream=s))) for s in (False, True, False, True)]
        out_of_rotation = [r.url for r in engine.replicas if not r.up]
        a.down = False
        await engine.check_replicas()
        after = [(await engine.chat(chat_request())).choices[0].message.content for _ in range(2)]
        return while_down, out_of_rotation, after

    while_down, out_of_rotation, after = run_with_engine([a, b], scenario)

    assert [type(r).__name__ for r in while_down] == ["ChatCompletionResponse", "async_generator"] * 2
    assert out_of_rotation == ["http://a:8000"]
    assert len(b.chats) == 4 + 1 and len(a.chats) == 1
    assert sorted(after) == ["from http://a:8000", "from http://b:8000"]


def test_no_replica_answers_is_a_503():
    a = FakeReplica("http://a:8000")

    async def scenario(engine):
        a.down = True
        return await engine.chat(chat_request())

    error = run_with_engine([a], scenario).error

    assert error.code == 503 and "No vLLM replica is answering" in error.message
