"""The admin tab's endpoints on the running app (--auth alice,bob --admin alice), through gradio_client:
alice sees the loop and drives it, bob is refused by the server itself (the hidden tab is no lock)."""

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from storage.process import current_process
from storage.store import FeedbackStore
from tests.conftest import USERS

READS = [("/admin_status", ()), ("/admin_feedback", ()), ("/admin_rounds", ()), ("/admin_adapters", ()),
         ("/admin_ppo_steps", (1,)), ("/admin_samples", ("v1",)), ("/admin_refresh", (None, None))]
ACTIONS = [("/admin_run_round", ()), ("/admin_activate", ("base",))]


def client(app_server, user):
    return Client(app_server.url, auth=(user, USERS[user]), verbose=False)


@pytest.mark.parametrize("endpoint, args", READS + ACTIONS)
def test_a_non_admin_is_refused_and_nothing_changes(app_server, endpoint, args):
    with app_server.db() as db:
        rounds_before = db.execute("select count(*) from rounds").fetchone()[0]

    with pytest.raises(AppError, match="Only admins"):
        client(app_server, "bob").predict(*args, api_name=endpoint)

    with app_server.db() as db:
        assert db.execute("select count(*) from rounds").fetchone()[0] == rounds_before


def test_an_admin_sees_the_loop_and_can_roll_back_to_base(app_server):
    alice = client(app_server, "alice")

    assert alice.predict(api_name="/admin_status").startswith("No round is running. Scheduler:")
    with app_server.db() as db:  # the shared app may hold rounds of other tests (the fuzzer's worker rounds)
        round_ids = [row[0] for row in db.execute("select id from rounds order by id desc limit 50")]
    assert [row["id"] for row in alice.predict(api_name="/admin_rounds")] == round_ids
    assert alice.predict(api_name="/admin_adapters") == []  # no round has trained in this app
    assert alice.predict("base", api_name="/admin_activate").startswith("Now serving the base model")
    with pytest.raises(AppError, match="Adapter version 99 does not exist"):
        alice.predict("v99", api_name="/admin_activate")
    status, *_ = alice.predict(None, None, api_name="/admin_refresh")  # what the tab itself loads
    assert status.startswith("No round is running.")


def test_run_now_while_a_round_holds_the_lock_shows_who_holds_it(app_server):
    alice = client(app_server, "alice")
    store = FeedbackStore.open(app_server.data_dir)
    held = store.round_lock.claim_round(trigger="cli", process=current_process())  # this test process holds the lock
    try:
        store.round_lock.update_round_progress(held.id, "PPO step 1/4: reward 0.100, KL 0.010, beta 0.050")

        with pytest.raises(AppError, match=f"Round {held.id} is already running"):
            alice.predict(api_name="/admin_run_round")
        status = alice.predict(api_name="/admin_status")
        rounds = alice.predict(api_name="/admin_rounds")
        curves = alice.predict(held.id, api_name="/admin_ppo_steps")
    finally:
        store.round_lock.finish_round(held.id, error="Released by the test.")
        store.close()
    assert status.startswith(f"Round {held.id} is running (cli, ")
    assert status.endswith("PPO step 1/4: reward 0.100, KL 0.010, beta 0.050")
    assert (rounds[0]["id"], rounds[0]["status"]) == (held.id, "running")
    assert curves["steps"] == [] and "still running" in curves["message"]
