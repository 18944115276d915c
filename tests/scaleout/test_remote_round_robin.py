"""Requests are spread over the replicas that answer, in turn."""

from tests.scaleout.fake_replicas import FakeReplica, chat_request, run_with_engine


def test_requests_alternate_between_replicas():
    a, b = FakeReplica("http://a:8000"), FakeReplica("http://b:8000")

    async def scenario(engine):
        return [(await engine.chat(chat_request())).choices[0].message.content for _ in range(4)]

    answers = run_with_engine([a, b], scenario)

    assert sorted(answers) == ["from http://a:8000"] * 2 + ["from http://b:8000"] * 2
    assert len(a.chats) == len(b.chats) == 2
