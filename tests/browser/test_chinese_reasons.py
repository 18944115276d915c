"""A Chinese reader sees the thumbs-down reasons in Chinese, and the reason picked is stored as
configured (English), so votes in both languages train on the same reasons."""

from tests.browser.conftest import answer_button, eventually, send


def test_a_chinese_reason_is_stored_as_configured(pages, store):
    page = pages.open("alice", locale="zh-CN")
    response_id = send(page, "法国的首都是哪里？")

    answer_button(page, response_id, "踩").click()  # Gradio's own Chinese for "Dislike"
    answer_button(page, response_id, "Feedback").hover()
    assert "内容有误" in page.locator(".extra-feedback-options").last.inner_text()
    page.locator(".extra-feedback-option", has_text="内容有误").click()

    votes = eventually(lambda: [v for v in store.latest_votes() if v.response_id == response_id and v.reason])
    pages.shot(page, "disliked-in-chinese")
    assert [(v.rating, v.reason, v.user) for v in votes] == [(-1, "Wrong", "alice")]
