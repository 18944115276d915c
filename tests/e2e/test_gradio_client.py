"""End to end through the UI's own API with the official gradio_client: chat, thumbs, compare, rank."""

from gradio_client import Client

from serving.chat_actions import footer_id
from tests.conftest import USERS


def last_answer(chat_value):
    content = chat_value[-1]["content"]
    return content[0]["text"] if isinstance(content, list) else content


def test_chat_thumbs_and_ranking_land_in_sqlite(app_server):
    client = Client(app_server.url, auth=("alice", USERS["alice"]), verbose=False)

    chat_value, box = client.predict("What is the capital of France?", api_name="/send")
    response_id = footer_id(last_answer(chat_value))
    vote_id = client.predict(response_id, -1, "Wrong", "too short", api_name="/vote")
    candidates = client.predict("Name a fruit.", 3, api_name="/compare")
    ranked = [candidates[2]["response_id"], candidates[0]["response_id"], candidates[1]["response_id"]]
    ranking_id = client.predict(ranked, api_name="/rank")

    with app_server.db() as db:
        answer = db.execute("select * from messages where id = ?", (response_id,)).fetchone()
        prompt = db.execute("select * from messages where id = ?", (answer["parent_id"],)).fetchone()
        vote = db.execute("select * from votes where id = ?", (vote_id,)).fetchone()
        items = db.execute("select response_id from ranking_items where ranking_id = ? order by position",
                           (ranking_id,)).fetchall()
        compare_answers = db.execute("select user, status, content from messages where id in (?, ?, ?)",
                                     ranked).fetchall()
    assert box == ""
    assert (answer["role"], answer["user"], answer["status"]) == ("assistant", "alice", "complete")
    assert answer["content"] and answer["completion_tokens"] > 0 and answer["adapter_version"] is None
    assert (prompt["role"], prompt["content"]) == ("user", "What is the capital of France?")
    assert (vote["response_id"], vote["rating"], vote["reason"], vote["comment"], vote["user"]) == \
        (response_id, -1, "Wrong", "too short", "alice")
    assert [r["response_id"] for r in items] == ranked
    assert all(r["user"] == "alice" and r["status"] == "complete" and r["content"] for r in compare_answers)


def test_rewrite_keeps_the_original(app_server):
    client = Client(app_server.url, auth=("alice", USERS["alice"]), verbose=False)
    chat_value, _ = client.predict("Write one word.", api_name="/send")
    response_id = footer_id(last_answer(chat_value))

    demo_id = client.predict(response_id, "Hello.", api_name="/rewrite")

    with app_server.db() as db:
        demo = db.execute("select * from demonstrations where id = ?", (demo_id,)).fetchone()
        original = db.execute("select content from messages where id = ?", (response_id,)).fetchone()
    assert (demo["response_id"], demo["content"], demo["user"]) == (response_id, "Hello.", "alice")
    assert original["content"] != "Hello." and original["content"]
