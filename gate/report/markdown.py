"""Neutralize untrusted text before it goes into Markdown.

Suite names, model specs, task notes and (later) dataset rows and model outputs are
not ours: they must not ping people (@-mentions), cross-link issues (#123), inject
HTML or comments, or break out of a table cell or code span.
"""

from __future__ import annotations

import html
import re

_ZWJ = "\u2060"  # word joiner: invisible, breaks GitHub's autolinking
# GitHub's mention rule is "(?:^|\W)@name" ("ndcg@10" is no mention, "x-@name" is one). Issue links come
# as #123, owner/repo#123 and GH-123; every "#" before a digit is broken, whatever precedes it.
_MENTION = re.compile(r"(?<!\w)@(?=[A-Za-z0-9_-])")
_ISSUE = re.compile(r"#(?=\d)")
_GH_REF = re.compile(r"\bGH-(?=\d)", re.IGNORECASE)
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~$])")  # $ opens GitHub's math: untrusted LaTeX must stay text
# at the start of a line: a heading, a block quote, a list item ("-", "+", "1." / "1)")
_BLOCK_START = re.compile(r"\A(#{1,6}(?=\s|\Z)|[-+](?=\s|\Z)|\d{1,9}(?=[.)](?:\s|\Z)))")
# GitHub autolinks bare "http://", "https://" and "www." (emails too, but "user@example.com" is left readable):
# a word joiner inside the scheme keeps an untrusted URL from becoming a link.
_AUTOLINK = re.compile(r"(?i)\b(https?)(?=://)|\b(www)(?=\.)")


def _one_line(value: object, limit: int | None) -> str:
    s = " ".join(str(value).split())
    if limit is not None and len(s) > limit:
        s = s[: max(limit - 1, 0)] + "…"
    return s


def text(value: object, limit: int | None = None) -> str:
    """Untrusted text as inert inline Markdown on one line (safe in a table cell)."""
    s = html.escape(_one_line(value, limit), quote=False)
    s = _MD_SPECIAL.sub(r"\\\1", s)
    # "12." -> "12\." (the escape goes before the dot); "#", "-", "+" -> "\#", "\-", "\+"
    s = _BLOCK_START.sub(lambda m: m.group(0) + "\\" if m.group(0)[0].isdigit() else "\\" + m.group(0), s)
    s = _MENTION.sub("@" + _ZWJ, s)
    s = _GH_REF.sub(lambda m: m.group(0) + _ZWJ, s)
    s = _AUTOLINK.sub(lambda m: m.group(0) + _ZWJ, s)
    return _ISSUE.sub("#" + _ZWJ, s)


def code(value: object, limit: int | None = None) -> str:
    """Untrusted text as an inline code span that cannot be closed early."""
    s = _one_line(value, limit).replace("|", "¦")  # a pipe ends a table cell even inside a code span
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def html_text(value: object, limit: int | None = None) -> str:
    """Untrusted text inside raw HTML (a ``<summary>``): one line, HTML-escaped, no mention or issue link.

    Markdown is not parsed inside an HTML block, so no backslash escapes here: they would show.
    """
    s = html.escape(_one_line(value, limit), quote=True)
    s = _MENTION.sub("@" + _ZWJ, s)
    s = _GH_REF.sub(lambda m: m.group(0) + _ZWJ, s)
    s = _AUTOLINK.sub(lambda m: m.group(0) + _ZWJ, s)
    return _ISSUE.sub("#" + _ZWJ, s)


_MERMAID_UNSAFE = re.compile(r"[^A-Za-z0-9 _.@/:+()-]")


def mermaid_label(value: object, limit: int = 40) -> str:
    """A Mermaid xychart category label: a double-quoted string with no quote, bracket, comma or backtick
    (they end the string or the list), no newline (it ends the statement) and no ``%%`` (a comment)."""
    s = _MERMAID_UNSAFE.sub("_", _one_line(value, limit))
    return f'"{s}"'
