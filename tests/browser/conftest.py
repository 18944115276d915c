"""Browser fixtures: one headless Chromium (the system's, driven by Playwright) per test module,
against the session's one `app_server` (tests/conftest.py: --auth alice,bob, --admin alice).
Each test gets fresh browser contexts (own cookies, own locale), screenshots of the steps it
names, and a screenshot of every open page when it fails, under TEST_ARTIFACTS_DIR/browser/
(default: test-artifacts/browser/ in the repository). The steps on the page that several tests
take (send a message, find an answer's buttons) are the functions at the end."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from storage.store import FeedbackStore
from tests.conftest import REPO, USERS

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# --headless and a fresh --user-data-dir come from Playwright's launch() itself. Without the
# networking flags Chromium keeps calling Google's services, which on a closed network only
# burns CPU and fills the log.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR") or REPO / "test-artifacts") / "browser"
TIMEOUT_MS = 120_000  # one answer on a busy 2-core CPU can take tens of seconds
VIEWPORT = {"width": 1280, "height": 1000}
ANSWERS = "#chatbot [data-testid=bot]"  # the chatbot's answer bubbles, oldest first
FOOTER_ID = re.compile(r"#(\d+) · ")  # an answer's footer as the page shows it: '#12 · model · base'


# Module scope, not session: while Playwright's sync API is started, its event loop counts as
# running on the main thread, and every later test's asyncio.run() would fail.
@pytest.fixture(scope="module")
def chromium():
    """The system Chromium (`make test` installs it); never a browser Playwright downloads."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"No Chromium at {CHROMIUM}: `make browser` installs the Debian package "
                    "(apt-get install chromium), or set CHROMIUM=/path/to/chromium.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the test item, so fixtures can tell a failed test at teardown."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


class Pages:
    """Opens logged-in pages of the running app; owns their contexts and screenshots."""

    def __init__(self, browser, app, test_name: str):
        self.browser = browser
        self.app = app
        self.name = re.sub(r"[^\w.-]+", "_", test_name)
        self.pages = []
        self.contexts = []

    def open(self, user: str, *, locale: str = "en-US"):
        """A page of the app logged in as `user`, in a browser whose language is `locale`."""
        context = self.browser.new_context(locale=locale, viewport=VIEWPORT)
        context.set_default_timeout(TIMEOUT_MS)
        self.contexts.append(context)
        # The same form post the login page makes; the session cookie lands in this context.
        login = context.request.post(self.app.url + "/login",
                                     form={"username": user, "password": USERS[user]})
        assert login.ok, f"login as {user} failed: {login.status} {login.text()}"
        page = context.new_page()
        self.pages.append(page)
        load(page, self.app.url)
        return page

    def shot(self, page, step: str) -> Path:
        """Saves a full-page screenshot named after the test and the step."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}--{step}.png"
        page.screenshot(path=path, full_page=True)
        return path

    def close(self, *, failed: bool):
        for i, page in enumerate(self.pages):
            if failed and not page.is_closed():
                self.shot(page, f"failed-page{i}")
        for context in self.contexts:
            context.close()


def load(page, url: str):
    """Opens the app and waits until the page has taken its language (the load event has run)."""
    page.goto(url)
    page.wait_for_function("document.cookie.includes('chat_lang=')")
    page.locator("#chat-input textarea").wait_for()


@pytest.fixture
def pages(chromium, app_server, request):
    pages = Pages(chromium, app_server, request.node.name)
    yield pages
    report = getattr(request.node, "report_call", None)
    pages.close(failed=report is None or report.failed)


@pytest.fixture
def store(app_server):
    """The app's database, read through storage/ as the app writes it."""
    store = FeedbackStore.open(app_server.data_dir)
    yield store
    store.close()


def eventually(read, *, timeout_s: float = 30.0):
    """`read()` once it returns something truthy (the UI's writes land a moment after the click),
    else its last answer."""
    deadline = time.monotonic() + timeout_s
    while not (result := read()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return result


def open_tab(page, name: str):
    """Clicks a tab of the page by its (shown) name."""
    page.get_by_role("tab", name=name, exact=True).first.click()


# ---------------------------------------------------------------------------- steps on the chat tab

def send(page, text: str) -> int:
    """Types `text` into the chat box, sends it and waits for the whole answer; returns its id
    (from the answer's footer, `#12 · model · base`, shown once the answer is stored)."""
    answers = page.locator(ANSWERS)
    before = answers.count()
    page.locator("#chat-input textarea").fill(text)
    page.locator("#chat-send").click()
    footer = answers.nth(before).locator("sub")
    footer.wait_for()
    return int(FOOTER_ID.match(footer.inner_text()).group(1))


def answer(page, response_id: int):
    """The bubble of one answer, found by the id in its footer."""
    return page.locator(ANSWERS).filter(has=page.locator("sub", has_text=f"#{response_id} ·"))


def answer_button(page, response_id: int, label: str):
    """A button under an answer (Like, Dislike, Feedback, Edit, ...): they show on hover."""
    bubble = answer(page, response_id)
    row = bubble.locator("xpath=ancestor::div[contains(@class, 'message-row')][1]")
    buttons = row.locator("xpath=following-sibling::div[contains(@class, 'message-buttons')][1]")
    bubble.hover()
    return buttons.get_by_role("button", name=label, exact=True)
