"""At 1400 px the admin tab shows a running round as it learns: the PPO curves grow as steps reach
its journal, the reward model's held-out accuracy shows, and the rounds and adapters tables read:
every header cell stays on one line (not one letter per line)."""

from align.round import round_progress
from storage.process import current_process
from storage.round_journal import journal_path
from tests.browser.conftest import ARTIFACTS, open_tab

WIDE = {"width": 1400, "height": 1000}
# Per visible header cell of a table: its text and on how many lines the browser laid that text out.
HEADER_LINES = """(table) => [...document.querySelectorAll(table + " th")]
    .filter((th) => getComputedStyle(th).visibility !== "hidden" && th.getBoundingClientRect().width > 0
                    && th.innerText.trim())
    .map((th) => {
        const walker = document.createTreeWalker(th, NodeFilter.SHOW_TEXT);
        const tops = new Set();
        while (walker.nextNode()) {
            if (!walker.currentNode.textContent.trim()) continue;
            const range = document.createRange();
            range.selectNodeContents(walker.currentNode);
            for (const rect of range.getClientRects()) if (rect.width > 0) tops.add(Math.round(rect.top));
        }
        return {text: th.innerText.trim(), lines: tops.size, width: Math.round(th.getBoundingClientRect().width)};
    })"""


def test_a_running_round_learns_on_the_admin_tab(pages, store, app_server):
    failed = store.round_lock.claim_round(trigger="schedule", process=current_process())
    store.round_lock.finish_round(failed.id, error="Too little feedback for a round: 3 preference pairs, at least 8 "
                                                   "needed; rank or rate more answers and the scheduler starts one.")
    running = store.round_lock.claim_round(trigger="admin", requested_by="alice", process=current_process())
    try:
        progress = round_progress(store, running.id, journal=journal_path(app_server.data_dir, running.id))
        progress("Reward model on 40 pairs (10 held out; the newest 50 of 50) ...")
        progress("Reward model trained in 51 s: 80.0% held-out accuracy on 10 pairs.",
                 stats={"rm_accuracy": 0.8, "rm_held_out_pairs": 10})
        for step in (1, 2):
            progress(f"PPO step {step}/8: reward {0.1 * step:.3f}, KL 0.010, beta 0.050", quiet=True,
                     stats={"reward": 0.1 * step, "kl": 0.01 * step, "beta": 0.05})
        page = pages.open("alice")
        page.set_viewport_size(WIDE)

        open_tab(page, "Admin")
        page.locator("#admin-learning", has_text="80.0% held-out accuracy on 10 pairs").wait_for()
        page.locator("#admin-curves-note", has_text="2 PPO steps so far").wait_for()
        progress("PPO step 3/8: reward 0.300, KL 0.030, beta 0.050", quiet=True,
                 stats={"reward": 0.3, "kl": 0.03, "beta": 0.05})
        page.locator("#admin-curves-note", has_text="3 PPO steps so far").wait_for()  # the tab's timer, no click
        page.locator("#admin-rounds", has_text="Too little feedback").wait_for()

        headers = page.evaluate(HEADER_LINES, "#admin-rounds")
        adapter_headers = page.evaluate(HEADER_LINES, "#admin-adapters")
        pages.shot(page, "admin-tab-1400")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.locator("#admin-rounds").screenshot(path=ARTIFACTS / "admin-rounds-table-1400.png")
    finally:
        store.round_lock.finish_round(running.id, error="Released by the test.")
    assert len(headers) >= 11, headers
    assert [h for h in headers if h["lines"] != 1] == [], headers
    assert len(adapter_headers) >= 11 and [h for h in adapter_headers if h["lines"] != 1] == [], adapter_headers
