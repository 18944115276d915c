"""A thumbs-down clicked under an answer, then a reason picked from the feedback menu, is stored
as a -1 vote with that reason by the user who clicked."""

from tests.browser.conftest import answer_button, eventually, send


def test_thumbs_down_with_a_reason(pages, store):
    page = pages.open("alice")
    response_id = send(page, "What is the capital of France?")

    answer_button(page, response_id, "Dislike").click()
    answer_button(page, response_id, "Feedback").hover()  # the reasons open on hover
    page.locator(".extra-feedback-option", has_text="Wrong").click()

    votes = eventually(lambda: [v for v in store.latest_votes() if v.response_id == response_id and v.reason])
    pages.shot(page, "disliked-wrong")
    assert [(v.rating, v.reason, v.user) for v in votes] == [(-1, "Wrong", "alice")]
