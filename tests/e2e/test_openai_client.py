"""End to end with the official openai client: chat (plain and streaming, n>1), then feedback
through /api/..., with every row checked in SQLite."""

import openai

from tests.conftest import USERS


def client(app_server):
    import httpx

    return openai.OpenAI(base_url=app_server.url + "/v1", api_key="unused",
                         http_client=httpx.Client(auth=("alice", USERS["alice"]), timeout=120))


def test_chat_then_feedback(app_server, alice):
    oa = client(app_server)
    reply = oa.chat.completions.create(model="default", max_tokens=16, temperature=0,
                                       messages=[{"role": "user", "content": "What is the capital of France?"}])
    response_id = reply.choices[0].model_extra["response_id"]

    vote = alice.post("/api/feedback", json={"response_id": response_id, "rating": 1, "reason": "correct"})
    demo = alice.post("/api/demonstrations", json={"response_id": response_id, "content": "Paris."})
    conversation = alice.get(f"/api/conversations/{reply.model_extra['conversation_id']}").json()

    assert "Paris" in reply.choices[0].message.content
    assert vote.status_code == 201 and demo.status_code == 201
    assert [m["role"] for m in conversation["messages"]] == ["user", "assistant"]
    with app_server.db() as db:
        row = db.execute("select * from messages where id = ?", (response_id,)).fetchone()
        stored_vote = db.execute("select * from votes where id = ?", (vote.json()["id"],)).fetchone()
    assert row["content"] == reply.choices[0].message.content
    assert row["completion_tokens"] == reply.usage.completion_tokens
    assert row["prompt_tokens"] == reply.usage.prompt_tokens
    assert (row["user"], row["model"], row["status"]) == ("alice", "SmolLM2-135M-Instruct", "complete")
    assert (stored_vote["rating"], stored_vote["reason"], stored_vote["user"]) == (1, "correct", "alice")


def test_streaming_candidates_then_ranking(app_server, alice):
    oa = client(app_server)
    stream = oa.chat.completions.create(model="SmolLM2-135M-Instruct", max_tokens=12, n=2, stream=True,
                                        messages=[{"role": "user", "content": "Name an animal."}])
    ids, texts = {}, {0: "", 1: ""}
    for chunk in stream:
        for choice in chunk.choices:
            if "response_id" in (choice.model_extra or {}):
                ids[choice.index] = choice.model_extra["response_id"]
            texts[choice.index] += choice.delta.content or ""

    ranking = alice.post("/api/rankings", json={"response_ids": [ids[1], ids[0]]})

    assert ranking.status_code == 201
    with app_server.db() as db:
        rows = {r["id"]: r for r in db.execute("select * from messages where id in (?, ?)", (ids[0], ids[1]))}
        items = db.execute("select response_id from ranking_items where ranking_id = ? order by position",
                           (ranking.json()["id"],)).fetchall()
    assert [rows[ids[i]]["content"] for i in (0, 1)] == [texts[0], texts[1]]
    assert all(r["status"] == "complete" and r["ttft_ms"] is not None for r in rows.values())
    assert [r["response_id"] for r in items] == [ids[1], ids[0]]
