"""Which language a request gets: the page's cookie (the switch), else the browser's
Accept-Language (any Chinese reads Simplified Chinese), else English."""

import pytest
from types import SimpleNamespace

from serving.i18n import locale_of, pick_locale


@pytest.mark.parametrize("cookie, accept, expected", [
    (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
    (None, "zh-TW,zh;q=0.9", "zh-CN"),
    (None, "zh", "zh-CN"),
    (None, "en-US,en;q=0.9", "en"),
    (None, "fr-FR, en;q=0.5, zh;q=0.7", "zh-CN"),  # by q: zh (0.7) before en (0.5); fr we lack
    (None, "fr-FR", "en"),
    (None, None, "en"),
    ("en", "zh-CN", "en"),  # the switch beats the browser
    ("zh-CN", "en-US", "zh-CN"),
    ("klingon", "zh-CN", "zh-CN"),  # a cookie we did not write is ignored
])
def test_pick_locale(cookie, accept, expected):
    assert pick_locale(cookie=cookie, accept_language=accept) == expected


def test_locale_of_a_request():
    zh = SimpleNamespace(cookies={}, headers={"accept-language": "zh-CN"})
    switched = SimpleNamespace(cookies={"chat_lang": "en"}, headers={"accept-language": "zh-CN"})
    assert (locale_of(zh), locale_of(switched), locale_of(None)) == ("zh-CN", "en", "en")
