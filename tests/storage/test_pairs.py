from storage.export import kto_rows, preference_pairs


def pair(prompt, chosen, rejected, group, source, created_at):
    return {
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "group": group,
        "source": source,
        "created_at": created_at,
    }


def test_a_ranking_of_four_gives_its_six_pairs_best_over_worse(store, ask):
    _, (a, b, c, d) = ask("Pick one", ["a", "b", "c", "d"], system="Be nice.")
    ranking_id = store.record_ranking(user="alice", response_ids=[c, a, d, b])
    prompt = [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Pick one"}]
    group, ranked_at = f"ranking:{ranking_id}", store.rankings()[0].created_at
    assert preference_pairs(store) == [
        pair(prompt, "c", "a", group, "ranking", ranked_at),
        pair(prompt, "c", "d", group, "ranking", ranked_at),
        pair(prompt, "c", "b", group, "ranking", ranked_at),
        pair(prompt, "a", "d", group, "ranking", ranked_at),
        pair(prompt, "a", "b", group, "ranking", ranked_at),
        pair(prompt, "d", "b", group, "ranking", ranked_at),
    ]


def test_thumbs_up_is_preferred_over_thumbs_down_on_the_same_prompt(store, ask):
    prompt_id, (good, bad) = ask("Q", ["good", "bad"])
    store.record_vote(response_id=good, user="alice", rating=1)
    store.record_vote(response_id=bad, user="alice", rating=1)
    store.record_vote(response_id=bad, user="alice", rating=-1)  # the latest vote counts
    last_vote_at = store.latest_votes()[-1].created_at  # the pair exists from the later of its two votes
    assert preference_pairs(store) == [
        pair([{"role": "user", "content": "Q"}], "good", "bad", f"prompt:{prompt_id}", "thumbs", last_vote_at)
    ]
    assert kto_rows(store) == []


def test_a_demonstration_is_preferred_over_the_answer_it_replaced(store, ask):
    prompt_id, (answer_id,) = ask("Q", ["meh"])
    store.record_demonstration(response_id=answer_id, user="alice", content="better")
    written_at = store.demonstrations()[0].created_at
    assert preference_pairs(store) == [
        pair([{"role": "user", "content": "Q"}], "better", "meh", f"prompt:{prompt_id}", "demonstration", written_at)
    ]


def test_unpaired_thumbs_become_kto_rows(store, ask):
    _, (liked,) = ask("Q1", ["liked"])
    _, (disliked,) = ask("Q2", ["disliked"])
    store.record_vote(response_id=liked, user="alice", rating=1)
    store.record_vote(response_id=disliked, user="alice", rating=-1)
    assert preference_pairs(store) == []
    assert kto_rows(store) == [
        {
            "prompt": [{"role": "user", "content": "Q1"}],
            "completion": [{"role": "assistant", "content": "liked"}],
            "label": True,
        },
        {
            "prompt": [{"role": "user", "content": "Q2"}],
            "completion": [{"role": "assistant", "content": "disliked"}],
            "label": False,
        },
    ]


def test_unfinished_and_empty_answers_are_not_training_data(store, ask):
    prompt_id, (finished, empty) = ask("Q", ["finished", ""])
    conversation_id = store.message(prompt_id).conversation_id
    (streaming,) = store.start_answers(conversation_id=conversation_id, user="alice", parent_id=prompt_id, n=1,
                                       model="qwen", adapter_version=None, sampling=None)
    store.record_ranking(user="alice", response_ids=[finished, streaming, empty])
    store.record_vote(response_id=streaming, user="alice", rating=-1)
    store.record_vote(response_id=empty, user="alice", rating=-1)
    assert preference_pairs(store) == []
    assert kto_rows(store) == []
