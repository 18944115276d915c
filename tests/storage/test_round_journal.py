"""A round's journal is owner-only, and a reader skips the line the round is still writing."""

import stat

from storage.round_journal import append_entry, journal_path, read_entries


def test_journal_is_private_and_a_half_written_line_is_skipped(tmp_path):
    path = journal_path(tmp_path, 7)
    append_entry(path, "Reward model on 8 pairs ...")
    append_entry(path, "PPO step 1/2", quiet=True, stats={"reward": 0.5})
    with open(path, "a") as out:
        out.write('{"at": "2025-03-01T12:00:00+00:00", "line": "PPO st')  # the writer is mid-line

    assert [(e["line"], e["quiet"], e.get("stats")) for e in read_entries(path)] == [
        ("Reward model on 8 pairs ...", False, None), ("PPO step 1/2", True, {"reward": 0.5})]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert read_entries(journal_path(tmp_path, 8)) == []
