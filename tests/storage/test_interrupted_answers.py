"""Answers a crash left 'streaming' become 'incomplete' at start-up, keeping what they hold;
finished answers are untouched. Marking only some ids leaves the other streams alone."""


def stream(store, ask, n=2):
    prompt_id, _ = ask(answers=[])
    conversation_id = store.message(prompt_id).conversation_id
    return store.start_answers(conversation_id=conversation_id, user="alice", parent_id=prompt_id, n=n)


def test_streaming_answers_become_incomplete_and_finished_ones_stay(store, ask):
    _, (done,) = ask(answers=["Four."])
    cut_off, finished = stream(store, ask)
    store.finish_answer(finished, content="Four.")

    assert store.mark_interrupted_answers() == 1
    assert [store.message(i).status for i in (cut_off, finished, done)] == ["incomplete", "complete", "complete"]
    assert store.mark_interrupted_answers() == 0


def test_only_the_given_answers_are_marked(store, ask):
    failed, still_streaming = stream(store, ask)

    assert store.mark_interrupted_answers([failed]) == 1
    assert store.mark_interrupted_answers([]) == 0
    assert [store.message(i).status for i in (failed, still_streaming)] == ["incomplete", "streaming"]
