"""An adapter counts as loaded once every replica that is up has it; a replica that was down
gets the active adapter loaded before it takes traffic again, and stays out if it cannot load it."""

import pytest

from tests.scaleout.fake_replicas import FakeReplica, chat_request, run_with_engine


def test_load_reaches_up_replicas_and_a_returning_one():
    a, b = FakeReplica("http://a:8000"), FakeReplica("http://b:8000")

    async def scenario(engine):
        b.down = True
        await engine.check_replicas()
        await engine.load_adapter(7, "/adapters/7")
        engine.activate(7)
        b.down = False
        await engine.check_replicas()
        answers = [(await engine.chat(chat_request(model="adapter-v7"))).choices[0].message.content
                   for _ in range(2)]
        return answers, [r.up for r in engine.replicas]

    answers, up = run_with_engine([a, b], scenario)

    assert a.adapters == b.adapters == {"adapter-v7": "/adapters/7"}
    assert up == [True, True]
    assert sorted(answers) == ["from http://a:8000", "from http://b:8000"]


def test_replica_that_cannot_load_the_active_adapter_stays_out():
    a, b = FakeReplica("http://a:8000"), FakeReplica("http://b:8000", refuse_paths={"/adapters/7"})

    async def scenario(engine):
        b.down = True
        await engine.check_replicas()
        await engine.load_adapter(7, "/adapters/7")
        engine.activate(7)
        b.down = False
        await engine.check_replicas()
        return [(r.up, r.why_down) for r in engine.replicas]

    (a_state, (b_up, b_why)) = run_with_engine([a, b], scenario)

    assert a_state == (True, "") and not b_up and "adapter-v7" in b_why


def test_a_refused_adapter_is_not_activatable():
    a, b = FakeReplica("http://a:8000"), FakeReplica("http://b:8000", refuse_paths={"/adapters/7"})

    async def scenario(engine):
        with pytest.raises(RuntimeError, match="bad weights"):
            await engine.load_adapter(7, "/adapters/7")
        with pytest.raises(KeyError):
            engine.activate(7)
        return engine.active.adapter_version

    assert run_with_engine([a, b], scenario) is None


def test_replica_that_lost_an_adapter_is_resynced_on_first_miss():
    a, b = FakeReplica("http://a:8000"), FakeReplica("http://b:8000")

    async def scenario(engine):
        await engine.load_adapter(7, "/adapters/7")
        engine.activate(7)
        b.adapters.clear()  # b restarted between two health checks
        answers = [(await engine.chat(chat_request(model="adapter-v7"))).choices[0].message.content
                   for _ in range(2)]
        await engine.check_replicas()
        return answers, [r.up for r in engine.replicas]

    answers, up = run_with_engine([a, b], scenario)

    assert answers == ["from http://a:8000"] * 2  # b answered 404 once and went out of rotation
    assert up == [True, True] and b.adapters == {"adapter-v7": "/adapters/7"}
