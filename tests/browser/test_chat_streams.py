"""A message typed in the chat tab streams back word by word, and the exchange is stored under
the user who sent it."""

from tests.browser.conftest import ANSWERS, FOOTER_ID, send

# Records every text the newest answer bubble shows, as the page redraws it.
WATCH_ANSWERS = """() => {
    window.seenAnswers = [];
    new MutationObserver(() => {
        const answers = document.querySelectorAll("%s");
        const text = answers.length ? answers[answers.length - 1].innerText : "";
        if (text && window.seenAnswers[window.seenAnswers.length - 1] !== text) window.seenAnswers.push(text);
    }).observe(document.querySelector("#chatbot"), {subtree: true, childList: true, characterData: true});
}""" % ANSWERS


def test_an_answer_streams_and_is_stored(pages, store):
    page = pages.open("alice")
    page.evaluate(WATCH_ANSWERS)

    response_id = send(page, "Tell me about the sea.")
    pages.shot(page, "answered")

    seen = page.evaluate("window.seenAnswers")
    final = page.locator(ANSWERS).last.inner_text()
    partial = [text for text in seen if not FOOTER_ID.search(text)]  # no footer yet: still streaming
    assert len(set(partial)) >= 2, f"the answer arrived in one piece: {seen}"
    assert len(partial[-1]) > len(partial[0]), seen  # it grew (Markdown may redraw earlier words)
    answer = store.message(response_id)
    question = store.message(answer.parent_id)
    assert (question.role, question.content, question.user) == ("user", "Tell me about the sea.", "alice")
    assert (answer.role, answer.user, answer.status) == ("assistant", "alice", "complete")
    assert f"#{response_id} · " in final and answer.content.strip() and answer.completion_tokens > 0
