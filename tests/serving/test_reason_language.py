"""Thumbs-down reasons are shown in the reader's language but stored as configured, so votes in
Chinese and in English train on the same reasons."""

from serving.i18n import reason_choices, reason_of

REASONS = ["Wrong", "Too long", "Off topic"]  # the last one is an admin's own: no translation


def test_reasons_are_shown_in_the_readers_language():
    assert reason_choices(REASONS, "en") == ["Like", "Dislike", "Wrong", "Too long", "Off topic"]
    assert reason_choices(REASONS, "zh-CN") == ["Like", "Dislike", "内容有误", "太啰嗦", "Off topic"]


def test_a_reason_is_stored_as_configured_whatever_the_language():
    assert [reason_of(shown, REASONS) for shown in ("内容有误", "Wrong", "太啰嗦", "Off topic")] == \
        ["Wrong", "Wrong", "Too long", "Off topic"]
