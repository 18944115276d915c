"""One engine request with n=3 returns three candidate answers (the Compare tab's source)."""

from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest


def test_n_three_gives_three_answers(engine_runner):
    engine = engine_runner.engine
    request = ChatCompletionRequest(model=engine.served_name, n=3, temperature=1.0, max_tokens=16, seed=0,
                                    messages=[{"role": "user", "content": "Name a colour."}])
    response = engine_runner.run(engine.chat(request))
    assert [c.index for c in response.choices] == [0, 1, 2]
    assert all(c.message.content for c in response.choices)
