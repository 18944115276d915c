"""A blank vote reason or comment is stored as NULL, whichever door sent it (the UI sends None, an API
client may send ""), so the same vote from either is one vote."""


def test_blank_reason_and_comment_are_stored_as_null(store, ask):
    _, (answer_id,) = ask()
    store.record_vote(response_id=answer_id, user="alice", rating=-1, reason="", comment="  ")
    (vote,) = store.latest_votes()
    assert (vote.reason, vote.comment) == (None, None)


def test_a_blank_reason_repeats_a_vote_without_one(store, ask):
    _, (answer_id,) = ask()
    first = store.record_vote(response_id=answer_id, user="alice", rating=1)
    assert store.record_vote(response_id=answer_id, user="alice", rating=1, reason="", comment="") == first
    assert store.stats()["votes"] == 1
