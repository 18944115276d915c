"""The page speaks the browser's language: a zh-CN browser reads the chat, compare and admin tabs
in Chinese (labels and the server's own sentences), an en-US browser in English."""

import pytest

from tests.browser.conftest import open_tab

PAGES = {
    "zh-CN": {"send": "发送", "new": "新对话", "placeholder": "想问点什么？", "compare": "比较", "admin": "管理",
              "status": "当前没有正在运行的训练轮次。", "column": "状态", "lang": "zh-CN"},
    "en-US": {"send": "Send", "new": "New conversation", "placeholder": "Ask something…", "compare": "Compare",
              "admin": "Admin", "status": "No round is running.", "column": "status", "lang": "en"},
}


@pytest.mark.parametrize("locale", PAGES)
def test_the_page_speaks_the_browsers_language(pages, locale):
    want = PAGES[locale]
    page = pages.open("alice", locale=locale)

    page.locator("#chat-send", has_text=want["send"]).wait_for()
    assert page.locator("#chat-new").inner_text() == want["new"]
    assert page.locator("#chat-input textarea").get_attribute("placeholder") == want["placeholder"]
    assert page.get_by_role("tab", name=want["compare"], exact=True).count() >= 1
    assert page.locator("#language-switch input:checked").get_attribute("value") == want["lang"]
    pages.shot(page, "chat")
    open_tab(page, want["admin"])
    page.locator("#admin-status", has_text=want["status"]).wait_for()
    page.locator("#admin-rounds").get_by_text(want["column"], exact=True).first.wait_for()
    pages.shot(page, "admin")
