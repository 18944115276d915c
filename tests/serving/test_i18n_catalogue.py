"""Every UI text exists in English and Simplified Chinese, with the same format fields, and the
texts the browser translates carry no ICU braces (svelte-i18n would read them as placeholders)."""

import re

from serving.i18n import LOCALES, STRINGS, catalogue, fields_of, tr

CJK = re.compile(r"[\u4e00-\u9fff\u3000-\u303f\uff00-\uffef]")  # ideographs, CJK and full-width punctuation
SAME_IN_BOTH = {"sampling.top_p", "col.KL"}  # technical names a Chinese reader knows as they are


def test_every_text_has_both_languages():
    assert list(LOCALES) == ["en", "zh-CN"]
    assert set(catalogue("en")) == set(catalogue("zh-CN")) == set(STRINGS)
    for key, (english, chinese) in STRINGS.items():
        assert english.strip() and chinese.strip(), key
        if key not in SAME_IN_BOTH:
            assert CJK.search(chinese), f"{key}: {chinese!r} is not Chinese"


def test_both_languages_use_the_same_fields():
    for key, (english, chinese) in STRINGS.items():
        assert fields_of(english) == fields_of(chinese), key


def test_texts_the_browser_translates_have_no_braces():
    browser_side = {k: v for k, v in STRINGS.items() if not k.startswith("msg.")}
    assert not [k for k, texts in browser_side.items() if any("{" in t or "}" in t for t in texts)]


def test_server_messages_fill_their_fields_in_the_readers_language():
    assert tr("msg.rank_each", "en", k=3) == "Give each answer a different rank from 1 to 3."
    assert tr("msg.rank_each", "zh-CN", k=3) == "请给每个回答一个不同的名次（1 到 3）。"
    assert tr("msg.comment_saved", "fr") == "Comment saved."  # a locale we lack reads English
