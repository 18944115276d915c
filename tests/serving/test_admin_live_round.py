"""While a round runs, the admin tab reads its journal (DATA_DIR/rounds/<id>.steps.jsonl, written by
align.round.round_progress): the PPO steps so far, the stage sentences and the reward model's
held-out accuracy appear before the round ends."""

from align.round import round_progress
from serving.admin import AdminPanel, records
from serving.api import Auth
from storage.process import current_process
from storage.round_journal import journal_path
from storage.store import FeedbackStore
from tests.serving.test_admin_panel import FakeAdapters, FakeSupervisor


def test_steps_stages_and_rm_accuracy_show_while_the_round_runs(tmp_path):
    store = FeedbackStore.open(tmp_path)
    panel = AdminPanel(store=store, adapters=FakeAdapters(store), supervisor=FakeSupervisor(store),
                       auth=Auth({}), data_dir=tmp_path)
    running = store.round_lock.claim_round(trigger="admin", process=current_process())
    progress = round_progress(store, running.id, journal=journal_path(tmp_path, running.id))

    progress("Reward model on 40 pairs (10 held out; the newest 50 of 50) ...")
    progress("Reward model trained in 51 s: 80.0% held-out accuracy on 10 pairs.",
             stats={"rm_accuracy": 0.8, "rm_held_out_pairs": 10})
    progress("PPO step 1/8: reward 0.100, KL 0.000, beta 0.050", quiet=True,
             stats={"reward": 0.1, "kl": 0.0, "beta": 0.05})
    progress("PPO step 2/8: reward 0.300, KL 0.020, beta 0.050", quiet=True,
             stats={"reward": 0.3, "kl": 0.02, "beta": 0.05})

    steps = panel.ppo_steps(running.id)
    assert steps.frame[["step", "reward", "kl", "beta"]].to_dict("records") == [
        {"step": 1, "reward": 0.1, "kl": 0.0, "beta": 0.05}, {"step": 2, "reward": 0.3, "kl": 0.02, "beta": 0.05}]
    assert steps.message == (f"Round {running.id} is still running: 2 PPO steps so far "
                             "(latest: PPO step 2/8: reward 0.300, KL 0.020, beta 0.050).")
    assert [r["stage"] for r in records(panel.round_stages(running.id).frame)] == [
        "Reward model on 40 pairs (10 held out; the newest 50 of 50) ...",
        "Reward model trained in 51 s: 80.0% held-out accuracy on 10 pairs."]
    assert "- Reward model: 80.0% held-out accuracy on 10 pairs." in panel.round_learning(running.id)
    assert "- Reward gain: not evaluated yet." in panel.round_learning(running.id)
    assert panel.default_round() == running.id and panel.is_running(running.id)
    store.close()
