"""The compare tab: one prompt, three candidates streamed side by side, a rank picked for each,
and the ranking stored best to worst by the user who ranked."""

import re

from tests.browser.conftest import eventually, open_tab

PROMPT = "Name a fruit, any fruit."
RANKS = {0: "2", 1: "3", 2: "1"}  # answer A second, B last, C best


def test_ranking_three_candidates(pages, store):
    page = pages.open("alice")
    open_tab(page, "Compare")
    page.locator("#compare-prompt textarea").fill(PROMPT)
    page.locator("#compare-generate").click()
    ids = eventually(lambda: complete_answers(store, PROMPT), timeout_s=120)
    assert len(ids) == 3
    for column, response_id in enumerate(ids):  # A, B, C show the answers in the order they were made
        page.locator(f"#compare-answer-{column}").filter(has_text=start_of(store.message(response_id).content)) \
            .wait_for()

    for column, rank in RANKS.items():
        dropdown = page.locator(f"#compare-rank-{column}")
        dropdown.locator("input").click()
        dropdown.get_by_role("option", name=rank, exact=True).click()
    pages.shot(page, "ranked")
    page.locator("#compare-submit").click()
    page.get_by_text("Ranking saved").wait_for()

    ranking = [r for r in store.rankings() if set(r.response_ids) == set(ids)]
    assert [(r.response_ids, r.user, r.k, r.source) for r in ranking] == [([ids[2], ids[0], ids[1]], "alice", 3, "ui")]


def complete_answers(store, prompt: str) -> list[int]:
    """The ids of alice's compare answers to `prompt` once every one is complete, else []."""
    for conversation in store.conversations(user="alice"):
        if conversation.source == "compare" and conversation.title == prompt:
            answers = [m for m in store.conversation(conversation.id, user="alice").messages if m.role == "assistant"]
            return [m.id for m in answers] if all(m.status == "complete" for m in answers) else []
    return []


def start_of(content: str) -> str:
    """The answer's first plain word, which Markdown shows as it is (list numbers and marks it may not)."""
    words = re.findall(r"[A-Za-z]{2,}", content)
    return words[0] if words else ""
