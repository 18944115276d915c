"""The language switch: an English browser picks 中文 and the whole page turns Chinese at once,
the server's messages too; the choice is kept across a reload, and English comes back the same way."""

from tests.browser.conftest import load


def test_switching_language_changes_the_page_and_is_kept(pages, app_server):
    page = pages.open("alice", locale="en-US")
    page.locator("#chat-send", has_text="Send").wait_for()

    page.locator("#language-switch").get_by_text("中文").click()
    page.locator("#chat-send", has_text="发送").wait_for()
    assert page.locator("#chat-new").inner_text() == "新对话"
    assert page.get_by_role("tab", name="比较", exact=True).count() >= 1  # a tab not shown right now too
    page.locator("#chat-send").click()  # with an empty box: the server refuses, in Chinese
    page.get_by_text("请先输入消息。").wait_for()
    pages.shot(page, "switched-to-chinese")

    load(page, app_server.url)
    page.locator("#chat-send", has_text="发送").wait_for()
    assert page.locator("#language-switch input:checked").get_attribute("value") == "zh-CN"
    pages.shot(page, "kept-after-reload")

    page.locator("#language-switch").get_by_text("English").click()
    page.locator("#chat-send", has_text="Send").wait_for()
    assert page.locator("#chat-new").inner_text() == "New conversation"
