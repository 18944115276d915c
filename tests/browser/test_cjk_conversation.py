"""Chinese text with emoji is stored byte for byte, whether it is typed into the page or posted to
the HTTP API, shows intact in the page, and comes out intact (as UTF-8, not escapes) in the
admin export."""

import json

from tests.browser.conftest import send

TEXT = "你好，请用中文回答 🙂🎉"
BETTER = "你好！我会用中文回答。🌏✨"


def stored_bytes(app_server, message_id: int) -> bytes:
    """The message as SQLite holds it, before Python decodes anything."""
    with app_server.db() as db:
        return db.execute("select cast(content as blob) from messages where id = ?", (message_id,)).fetchone()[0]


def post_utf8(client, path: str, body: dict):
    """A JSON body as raw UTF-8 (no \\u escapes), as browsers and most clients send it."""
    return client.post(path, content=json.dumps(body, ensure_ascii=False).encode(),
                       headers={"content-type": "application/json; charset=utf-8"})


def test_typed_in_the_page(pages, store, app_server):
    page = pages.open("alice", locale="zh-CN")

    response_id = send(page, TEXT)
    pages.shot(page, "chinese-conversation")

    question = store.message(store.message(response_id).parent_id)
    assert (question.role, question.user, question.content) == ("user", "alice", TEXT)
    assert stored_bytes(app_server, question.id) == TEXT.encode()
    assert store.conversation(question.conversation_id, user="alice").title == TEXT
    assert page.locator("#chatbot [data-testid=user]").last.inner_text().strip() == TEXT


def test_posted_to_the_api_and_exported(app_server, alice, store):
    chat = post_utf8(alice, "/v1/chat/completions", {"messages": [{"role": "user", "content": TEXT}],
                                                      "max_tokens": 8})
    assert chat.status_code == 200, chat.text
    response_id = chat.json()["choices"][0]["response_id"]
    demo = post_utf8(alice, "/api/demonstrations", {"response_id": response_id, "content": BETTER})
    assert demo.status_code == 201, demo.text

    question = store.message(store.message(response_id).parent_id)
    assert question.content == TEXT and stored_bytes(app_server, question.id) == TEXT.encode()
    assert [d.content for d in store.demonstrations() if d.response_id == response_id] == [BETTER]
    export = alice.get("/api/admin/export")
    assert export.status_code == 200
    assert TEXT.encode() in export.content and BETTER.encode() in export.content
    datasets = export.json()
    assert {"prompt": [{"role": "user", "content": TEXT}]} in datasets["prompts"]
    assert {"prompt": [{"role": "user", "content": TEXT}],
            "completion": [{"role": "assistant", "content": BETTER}]} in datasets["sft"]
