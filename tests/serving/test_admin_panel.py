"""The admin tab's data and actions (serving.admin.AdminPanel) on a real FeedbackStore with crafted
rounds, adapters and metrics.json files; the engine and the round process are stand-ins."""

import asyncio
import json
import math
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from sqlite_utils import Database

from loop.schedule import Due
from serving.adapters import AdapterError
from serving.admin import AdminError, AdminPanel, records
from serving.api import Auth
from serving.backend import ActiveModel
from storage.process import ProcessIdentity, current_process
from storage.store import FeedbackStore

DAY1 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
ALIVE = ProcessIdentity(host="test", pid=1, start="")


class Clock:
    """Set by the test; every reading moves one second so timestamps stay distinct."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


class FakeAdapters:
    """AdapterManager's surface the panel uses: engine.active and activate()."""

    def __init__(self, store: FeedbackStore):
        self.store = store
        self.engine = SimpleNamespace(active=ActiveModel(name="base", adapter_version=None))

    async def activate(self, version, *, by):
        if version is not None and self.store.registry.adapter(version).status == "failed":
            raise AdapterError(f"vLLM could not load adapter v{version}: bad weights")
        self.engine.active = ActiveModel(name=f"adapter-v{version}" if version else "base", adapter_version=version)
        if version is None:
            self.store.registry.deactivate_adapters()
        else:
            self.store.registry.set_adapter_status(version, "active")
        return self.engine.active


class FakeSupervisor:
    """RoundSupervisor.start_round claims the DB lock, as the real one does, but starts no process."""

    def __init__(self, store: FeedbackStore):
        self.store = store
        self.last_due = Due(False, "3 new feedback events since the last round; 50 needed.")

    def start_round(self, *, trigger, requested_by=None):
        return self.store.round_lock.claim_round(trigger=trigger, requested_by=requested_by, process=current_process())


def ppo_steps(n=3):
    return [{"reward": 0.1 * i, "kl": 0.01 * i, "beta": 0.05, "entropy": 2.0} for i in range(n)]


def evaluation(reference_version=None):
    sample = lambda who, i: {"prompt": f"Q{i}", "answer": f"{who} answer {i}", "reward": i / 10}  # noqa: E731
    return {
        "candidate": {"mean_reward": 0.4, "kl_to_base": 1.5, "mean_length": 20, "degenerate_fraction": 0.0,
                      "samples": [sample("candidate", i) for i in range(2)]},
        "reference": {"mean_reward": 0.1, "kl_to_base": 0.0, "mean_length": 30, "degenerate_fraction": 0.0,
                      "samples": [sample("reference", i) for i in range(2)]},
        "reference_version": reference_version, "reward_gain": 0.3,
    }


@pytest.fixture
def clock():
    return Clock(DAY1)


@pytest.fixture
def store(clock):
    return FeedbackStore(Database(memory=True), clock=clock)


@pytest.fixture
def panel(store, clock):
    return AdminPanel(store=store, adapters=FakeAdapters(store), supervisor=FakeSupervisor(store),
                      auth=Auth({"alice": "a", "bob": "b"}, admins={"alice"}), clock=clock)


def trained_round(store, tmp_path, *, reference_version=None, steps=None):
    """A round that succeeded: its adapter dir with metrics.json, registered as the next version."""
    claimed = store.round_lock.claim_round(trigger="admin", requested_by="alice", process=ALIVE, alive=lambda r: True)
    store.round_lock.update_round_progress(claimed.id, "PPO step 3/3: reward 0.200, KL 0.020, beta 0.050")
    directory = tmp_path / f"round-{claimed.id}"
    directory.mkdir()
    ev = evaluation(reference_version)
    (directory / "metrics.json").write_text(json.dumps({
        "reward_model": {"held_out_accuracy": 0.75}, "ppo_steps": ppo_steps() if steps is None else steps,
        "evaluation": ev, "timings_s": {"ppo": 10.0}, "data": {}}))
    summary = {"candidate": {k: v for k, v in ev["candidate"].items() if k != "samples"},
               "reference": {k: v for k, v in ev["reference"].items() if k != "samples"},
               "reference_version": reference_version, "reward_gain": 0.3, "reward_gain_interval": [0.1, 0.5],
               "interval_confidence": 0.95, "eval_prompts": 32, "answers_per_prompt": 4, "rm_accuracy": 0.75,
               "rm_held_out_pairs": 40}
    version = store.registry.register_adapter(
        path=str(directory), base_model="m", metrics=summary, round_id=claimed.id,
        data={"pairs": 12, "demonstrations": 4, "train_prompts": 9, "eval_prompts": 16})
    store.round_lock.finish_round(claimed.id, adapter_version=version)
    return claimed.id, version


def failed_round(store, error="Too little feedback for a round: 3 preference pairs, at least 8 needed."):
    claimed = store.round_lock.claim_round(trigger="schedule", process=ALIVE, alive=lambda r: True)
    store.round_lock.finish_round(claimed.id, error=error)
    return claimed.id


# ---- what the tab shows ---------------------------------------------------------------------

def test_feedback_per_day_is_one_row_per_day_and_kind(store, panel, clock):
    conversation = store.create_conversation(user="bob")
    prompt = store.record_message(conversation_id=conversation, user="bob", role="user", content="Hi?")
    a, b = (store.record_message(conversation_id=conversation, user="bob", role="assistant", content=t,
                                 parent_id=prompt, model="qwen") for t in ("Hello.", "Hey."))
    store.record_vote(response_id=a, user="bob", rating=1)
    clock.now += timedelta(days=1)
    store.record_ranking(user="bob", response_ids=[b, a])
    store.record_demonstration(response_id=a, user="bob", content="Hello there.")

    assert records(panel.feedback_per_day()) == [
        {"day": "2025-03-01", "kind": "votes", "count": 1},
        {"day": "2025-03-01", "kind": "rankings", "count": 0},
        {"day": "2025-03-01", "kind": "demonstrations", "count": 0},
        {"day": "2025-03-02", "kind": "votes", "count": 0},
        {"day": "2025-03-02", "kind": "rankings", "count": 1},
        {"day": "2025-03-02", "kind": "demonstrations", "count": 1},
    ]


def test_rounds_table_joins_each_round_with_its_adapter(store, panel, tmp_path):
    trained, version = trained_round(store, tmp_path)
    failed = failed_round(store)
    running = store.round_lock.claim_round(trigger="admin", requested_by="alice", process=ALIVE,
                                           alive=lambda r: True).id

    rows = {r["id"]: r for r in records(panel.rounds_table())}

    assert [r["id"] for r in records(panel.rounds_table())] == [running, failed, trained]
    assert {k: rows[trained][k] for k in ("status", "trigger", "requested_by", "adapter", "pairs", "demonstrations",
                                          "train prompts", "eval prompts", "RM accuracy", "candidate reward",
                                          "reference reward", "KL")} == {
        "status": "succeeded", "trigger": "admin", "requested_by": "alice", "adapter": f"v{version}", "pairs": 12,
        "demonstrations": 4, "train prompts": 9, "eval prompts": 16, "RM accuracy": 0.75, "candidate reward": 0.4,
        "reference reward": 0.1, "KL": 1.5}
    assert type(rows[trained]["pairs"]) is int  # not 12.0 because a failed round has no counts
    assert rows[trained]["progress / error"].startswith("PPO step 3/3")
    assert rows[failed]["status"] == "failed" and rows[failed]["progress / error"].startswith("Too little feedback")
    assert rows[failed]["pairs"] is None and rows[failed]["adapter"] == ""
    assert rows[running]["status"] == "running" and rows[running]["duration"].endswith("s")


def test_adapters_table_says_which_serves_and_why_each_was_judged(store, panel, tmp_path):
    _, v1 = trained_round(store, tmp_path)
    _, v2 = trained_round(store, tmp_path)
    store.registry.set_adapter_decision(v2, promote=False, reasons=["Mean reward too low.", "KL fine."], by="gate")
    asyncio.run(panel.activate(f"v{v1}", user="alice"))
    store.registry.mark_adapter_pruned(v2)

    rows = records(panel.adapters_table())

    assert [(r["version"], r["status"], r["active"]) for r in rows] == [("v2", "rejected", False),
                                                                       ("v1", "active", True)]
    assert rows[0]["decision"] == "reject (gate)" and rows[0]["reasons"] == "Mean reward too low. KL fine."
    assert rows[0]["pruned"] and not rows[1]["pruned"]
    assert (rows[1]["reward gain"], rows[1]["gain interval"], rows[1]["KL"], rows[1]["RM accuracy"]) == \
        (0.3, "95% [+0.100, +0.500]", 1.5, 0.75)
    assert panel.version_choices() == ["base", "v1"]  # pruned files cannot be served


def test_ppo_curves_come_from_the_rounds_metrics_file(store, panel, tmp_path):
    round_id, version = trained_round(store, tmp_path)

    report = panel.ppo_steps(round_id)

    assert report.frame[["step", "reward", "kl", "beta"]].to_dict("records") == [
        {"step": 1, "reward": 0.0, "kl": 0.0, "beta": 0.05},
        {"step": 2, "reward": 0.1, "kl": 0.01, "beta": 0.05},
        {"step": 3, "reward": 0.2, "kl": 0.02, "beta": 0.05},
    ]
    assert report.message == f"Round {round_id} (v{version}): 3 PPO steps."
    failed_round(store)
    assert panel.default_round() == round_id  # the tab opens on curves that exist


def test_a_round_without_curves_says_why(store, panel, tmp_path):
    failed = failed_round(store, error="RoundError: the reward model diverged")
    _, pruned_version = trained_round(store, tmp_path)
    pruned_round = store.registry.adapter(pruned_version).round_id
    store.registry.mark_adapter_pruned(pruned_version)
    running = store.round_lock.claim_round(trigger="admin", process=ALIVE, alive=lambda r: True).id

    assert panel.ppo_steps(failed).frame.empty
    assert "failed without training an adapter" in panel.ppo_steps(failed).message
    assert "the reward model diverged" in panel.ppo_steps(failed).message
    assert "deleted by retention" in panel.ppo_steps(pruned_round).message
    assert "still running" in panel.ppo_steps(running).message
    with pytest.raises(AdminError, match="Round 99 does not exist"):
        panel.ppo_steps(99)


def test_samples_put_the_candidate_next_to_its_reference(store, panel, tmp_path):
    _, v1 = trained_round(store, tmp_path)
    asyncio.run(panel.activate(f"v{v1}", user="alice"))
    _, v2 = trained_round(store, tmp_path, reference_version=v1)

    report = panel.samples(f"v{v2}")

    assert records(report.frame) == [
        {"prompt": "Q0", "candidate answer": "candidate answer 0", "candidate reward": 0.0,
         "reference answer": "reference answer 0", "reference reward": 0.0},
        {"prompt": "Q1", "candidate answer": "candidate answer 1", "candidate reward": 0.1,
         "reference answer": "reference answer 1", "reference reward": 0.1},
    ]
    assert report.message == "v2 (mean reward +0.400) next to v1 (mean reward +0.100), which served when the round ran."
    assert panel.candidate_choices() == ["v2", "v1"]
    asyncio.run(panel.activate("base", user="alice"))
    assert panel.samples(v2).message.endswith("; the base model serves now.")


def test_status_line_shows_the_running_round_or_the_scheduler(store, panel):
    assert panel.status_line() == ("No round is running. Scheduler: 3 new feedback events since the last round; "
                                   "50 needed.")
    running = store.round_lock.claim_round(trigger="admin", requested_by="alice", process=ALIVE, alive=lambda r: True)
    store.round_lock.update_round_progress(running.id, "Reward model on 10 pairs (2 held out) ...")

    line = panel.status_line()

    assert line.startswith(f"Round {running.id} is running (admin by alice, ")
    assert line.endswith("so far): Reward model on 10 pairs (2 held out) ...")


def test_records_turn_missing_numbers_into_none(store, panel):
    failed_round(store)
    row = records(panel.rounds_table())[0]
    assert row["RM accuracy"] is None and not any(isinstance(v, float) and math.isnan(v) for v in row.values())


# ---- what the tab does ------------------------------------------------------------------------

def test_run_round_now_starts_one_and_is_refused_while_one_runs(store, panel):
    message = panel.run_round(user="alice")

    running = store.round_lock.running_round()
    assert message.startswith(f"Started round {running.id}")
    assert (running.trigger, running.requested_by) == ("admin", "alice")
    with pytest.raises(AdminError, match=f"Round {running.id} is already running"):
        panel.run_round(user="alice")


def test_activate_promotes_rolls_back_and_explains_refusals(store, panel, tmp_path):
    _, v1 = trained_round(store, tmp_path)
    _, v2 = trained_round(store, tmp_path)
    store.registry.set_adapter_status(v2, "failed", error="bad weights")

    assert asyncio.run(panel.activate("v1", user="alice")).startswith("Now serving adapter v1")
    assert panel.serving_version() == v1
    assert asyncio.run(panel.activate("base", user="alice")).startswith("Now serving the base model")
    assert panel.serving_version() is None
    with pytest.raises(AdminError, match="vLLM could not load adapter v2"):
        asyncio.run(panel.activate("v2", user="alice"))
    with pytest.raises(AdminError, match="Adapter version 7 does not exist"):
        asyncio.run(panel.activate("v7", user="alice"))
    with pytest.raises(AdminError, match="does not exist; pick"):
        asyncio.run(panel.activate("latest", user="alice"))


def test_only_admins_act(store, panel, tmp_path):
    _, v1 = trained_round(store, tmp_path)
    with pytest.raises(AdminError, match="Only admins"):
        panel.run_round(user="bob")
    with pytest.raises(AdminError, match="Only admins"):
        asyncio.run(panel.activate("v1", user="bob"))
    assert store.round_lock.running_round() is None and panel.serving_version() is None
    panel.check_admin("alice")
    open_panel = AdminPanel(store=store, adapters=FakeAdapters(store), supervisor=FakeSupervisor(store),
                            auth=Auth({}))
    open_panel.check_admin("anon-1234")  # without --auth the local user is the admin
