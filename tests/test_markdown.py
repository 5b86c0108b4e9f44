"""Model-written markdown rendered inert: nothing fetched, nothing clickable, the rest kept."""

import pytest

from assistant.consult.markdown import inert_markdown


@pytest.mark.parametrize("text,shown", [
    ("see ![x](https://evil.example/?q=secret) now", "see (image not shown: x) now"),
    ("[click](https://evil.example)", "click (`https://evil.example`)"),
    ("[a](<https://x y>)", "a (`https://x y`)"),
    ("go to https://evil.example/a?b=c ok", "go to `https://evil.example/a?b=c` ok"),
    ("<https://x.example/z>", "`https://x.example/z`"),
    ("[1]: https://evil.example/", "[1] `https://evil.example/`"),
    ("code `https://a.example` stays", "code `https://a.example` stays"),
    ("**Murmur: Present** (62%) [1]", "**Murmur: Present** (62%) [1]"),
])
def test_inert(text, shown):
    assert inert_markdown(text) == shown


def test_nothing_link_shaped_survives():
    for text in ["[[n]](http://e)", "[x]( javascript:alert(1) )", "![](data:image/png;base64,AAAA)", "www.evil.com"]:
        out = inert_markdown(text)
        assert "](" not in out and "![" not in out, out
