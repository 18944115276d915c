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

    # Waits rather than one-off reads: the load handler's answer from the server (tab names, the
    # switch's state) can land after the client-side labels on loaded cores.
    page.locator("#chat-send", has_text=want["send"]).wait_for()
    page.locator("#chat-new", has_text=want["new"]).wait_for()
    page.locator(f'#chat-input textarea[placeholder="{want["placeholder"]}"]').wait_for()
    page.get_by_role("tab", name=want["compare"], exact=True).first.wait_for(state="attached")
    page.locator(f'#language-switch input[value="{want["lang"]}"]:checked').wait_for(state="attached")
    pages.shot(page, "chat")
    open_tab(page, want["admin"])
    page.locator("#admin-status", has_text=want["status"]).wait_for()
    page.locator("#admin-rounds").get_by_text(want["column"], exact=True).first.wait_for()
    pages.shot(page, "admin")
