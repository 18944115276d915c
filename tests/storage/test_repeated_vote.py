"""The same vote twice (a UI that fires one click twice, a client that resends) is stored once; a
different vote after it, or the first one again after a change of mind, is a new row."""


def test_an_identical_vote_adds_no_row_and_returns_the_same_id(store, ask):
    _, (answer_id,) = ask()
    first = store.record_vote(response_id=answer_id, user="alice", rating=-1, reason="Wrong")
    again = store.record_vote(response_id=answer_id, user="alice", rating=-1, reason="Wrong")
    assert again == first
    assert store.stats()["votes"] == 1


def test_a_changed_vote_and_a_change_back_are_both_kept(store, ask):
    _, (answer_id,) = ask()
    store.record_vote(response_id=answer_id, user="alice", rating=-1, reason="Wrong")
    store.record_vote(response_id=answer_id, user="alice", rating=-1, reason="Rude")
    back = store.record_vote(response_id=answer_id, user="alice", rating=-1, reason="Wrong")
    assert store.stats()["votes"] == 3
    assert [v.id for v in store.latest_votes()] == [back]


def test_the_same_rating_with_a_comment_added_is_a_new_row(store, ask):
    _, (answer_id,) = ask()
    store.record_vote(response_id=answer_id, user="alice", rating=1)
    store.record_vote(response_id=answer_id, user="alice", rating=1, comment="Clear.")
    assert store.stats()["votes"] == 2
