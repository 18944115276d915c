"""A finished round's learning in the admin tab: the reward model's held-out accuracy, the candidate's
reward gain with the gate's interval, and the gate's decision with every sentence it gave; the
rounds table shows the gain and its interval in one short column."""

from sqlite_utils import Database

from serving.admin import ROUND_VIEW_COLUMNS, AdminPanel, records
from serving.api import Auth
from storage.store import FeedbackStore
from tests.serving.test_admin_panel import FakeAdapters, FakeSupervisor, trained_round


def test_learning_names_accuracy_interval_and_the_gates_sentences(tmp_path):
    store = FeedbackStore(Database(memory=True))
    panel = AdminPanel(store=store, adapters=FakeAdapters(store), supervisor=FakeSupervisor(store), auth=Auth({}))
    round_id, version = trained_round(store, tmp_path)
    assert "- Gate: not judged yet." in panel.round_learning(round_id)
    store.registry.set_adapter_decision(version, promote=False, by="gate", reasons=[
        "Mean reward +0.400 vs +0.100: its lower end is not above +0.000, so the gain may be noise.",
        "KL to base 1.50 nats per answer (limit 10.00)."])

    assert panel.round_learning(round_id).splitlines() == [
        f"**Round {round_id} (succeeded)**",
        "",
        "- Reward model: 75.0% held-out accuracy on 40 pairs.",
        f"- Reward gain of v{version} over the base model: +0.300, 95% interval [+0.100, +0.500] over 32 held-out "
        "prompts x 4 answers.",
        "- Gate: rejected (by gate):",
        "  - Mean reward +0.400 vs +0.100: its lower end is not above +0.000, so the gain may be noise.",
        "  - KL to base 1.50 nats per answer (limit 10.00).",
    ]
    row = records(panel.rounds_view())[0]
    assert list(row) == ROUND_VIEW_COLUMNS
    assert (row["by"], row["gain [interval]"], row["RM accuracy"]) == \
        ("admin · alice", "+0.300 [+0.100, +0.500]", 0.75)
    adapter = records(panel.adapters_view())[0]
    assert (adapter["version"], adapter["gain [interval]"], adapter["decision"]) == \
        (f"v{version}", "+0.300 [+0.100, +0.500]", "reject (gate)")
    assert adapter["reasons / error"].startswith("Mean reward +0.400 vs +0.100")
