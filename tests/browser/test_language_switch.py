"""The language switch: an English browser picks 中文 and the whole page turns Chinese at once,
the server's messages too; the choice is kept across a reload, and English comes back the same way."""

from tests.browser.conftest import load


def test_switching_language_changes_the_page_and_is_kept(pages, app_server):
    page = pages.open("alice", locale="en-US")
    page.locator("#chat-send", has_text="Send").wait_for()

    page.locator("#language-switch").get_by_text("中文").click()
    page.locator("#chat-send", has_text="发送").wait_for()
    # Waits, not one-off reads: part of the page (the tab names) comes back from the server after the
    # switch, which on loaded cores can land after the button has turned Chinese.
    page.locator("#chat-new", has_text="新对话").wait_for()
    page.get_by_role("tab", name="比较", exact=True).first.wait_for(state="attached")  # a tab not shown right now too
    page.locator("#chat-send").click()  # with an empty box: the server refuses, in Chinese
    page.get_by_text("请先输入消息。").wait_for()
    pages.shot(page, "switched-to-chinese")

    load(page, app_server.url)
    page.locator("#chat-send", has_text="发送").wait_for()
    page.locator('#language-switch input[value="zh-CN"]:checked').wait_for(state="attached")
    pages.shot(page, "kept-after-reload")

    page.locator("#language-switch").get_by_text("English").click()
    page.locator("#chat-send", has_text="Send").wait_for()
    page.locator("#chat-new", has_text="New conversation").wait_for()
