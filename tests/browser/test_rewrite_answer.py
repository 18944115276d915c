"""Editing an answer in the chat stores the user's better version as a demonstration of that
answer; the model's answer stays as it was."""

from tests.browser.conftest import answer_button, eventually, send

BETTER = "Paris is the capital of France."


def test_rewriting_an_answer_stores_the_better_version(pages, store):
    page = pages.open("alice")
    response_id = send(page, "What is the capital of France?")
    original = store.message(response_id).content

    answer_button(page, response_id, "Edit").click()
    page.locator("#chatbot textarea.edit-textarea").fill(BETTER)
    page.locator("#chatbot .message-buttons").get_by_role("button", name="Submit").click()  # the one open edit
    page.get_by_text("Your better answer was saved").wait_for()
    pages.shot(page, "rewritten")

    demos = eventually(lambda: [d for d in store.demonstrations() if d.response_id == response_id])
    assert [(d.content, d.user) for d in demos] == [(BETTER, "alice")]
    assert store.message(response_id).content == original != BETTER
