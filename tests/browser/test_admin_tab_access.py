"""The admin tab opens for an admin and shows the loop's state; a user does not see it, and the
server refuses the tab's data to that user's browser session even when asked directly."""

from tests.browser.conftest import open_tab


def test_an_admin_opens_the_admin_tab(pages):
    page = pages.open("alice")

    open_tab(page, "Admin")
    page.locator("#admin-status", has_text="No round is running. Scheduler:").wait_for()
    page.locator("#admin-rounds").wait_for()
    pages.shot(page, "admin-tab")


def test_a_user_is_refused_the_admin_tab(pages):
    page = pages.open("bob")
    page.get_by_role("tab", name="Compare", exact=True).first.wait_for()

    assert page.get_by_role("tab", name="Admin", exact=True).count() == 0
    pages.shot(page, "no-admin-tab")
    # The hidden tab is no lock: bob's own browser session asks the server for the tab's data.
    call = page.request.post(page.url.rstrip("/") + "/gradio_api/call/admin_status", data={"data": []})
    result = page.request.get(page.url.rstrip("/") + f"/gradio_api/call/admin_status/{call.json()['event_id']}")
    assert "event: error" in result.text() and "Only admins may use the admin tab." in result.text()
