"""Unit tests for gate.report.markdown: untrusted text must stay inert in Markdown."""

from __future__ import annotations

import re

import pytest

from gate.report.markdown import code, text

WJ = "\u2060"  # word joiner: invisible, breaks GitHub's autolinking


def unescaped_pipes(s: str) -> list[int]:
    """Positions of '|' not preceded by an odd number of backslashes (i.e. live table pipes)."""
    out = []
    for m in re.finditer(r"\|", s):
        backslashes = len(s[: m.start()]) - len(s[: m.start()].rstrip("\\"))
        if backslashes % 2 == 0:
            out.append(m.start())
    return out


@pytest.fixture(scope="module")
def md():
    markdown_it = pytest.importorskip("markdown_it", reason="markdown-it-py renders the checks")
    return markdown_it.MarkdownIt("commonmark").enable("table")


def table_cells(md, cell: str) -> list[str]:
    """Render a one-row table whose first cell is ``cell``; return the body cells' inline HTML."""
    html = md.render(f"| a | b |\n|---|---|\n| {cell} | END |\n")
    body = html.split("<tbody>", 1)[1]
    return re.findall(r"<td>(.*?)</td>", body, flags=re.S)


# =========================================================================== text(): tables


@pytest.mark.parametrize("value", ["a|b", "|", "a || b", "\\|", "x\\\\|y", "| col | col |"])
def test_text_has_no_live_pipe(value):
    out = text(value)
    assert unescaped_pipes(out) == [], out


@pytest.mark.parametrize("value", ["a|b", "| x | y | z |", "\\|", "x\\\\|y", "a\n| b"])
def test_text_cannot_break_a_table_row(md, value):
    cells = table_cells(md, text(value))
    assert len(cells) == 2, cells
    assert cells[1] == "END"


def test_text_pipe_renders_as_literal_pipe(md):
    assert table_cells(md, text("a|b")) == ["a|b", "END"]


# =========================================================================== text(): HTML


@pytest.mark.parametrize(
    "value",
    [
        "<script>alert(1)</script>",
        "<!-- hide the rest",
        "</details>",
        "<details><summary>x</summary>",
        "<img src=x onerror=alert(1)>",
        "<https://evil.example>",
    ],
)
def test_text_escapes_raw_html(value):
    out = text(value)
    assert "<" not in out and ">" not in out, out
    assert "&lt;" in out


@pytest.mark.parametrize("value", ["<script>x</script>", "<!-- c -->", "</details>"])
def test_text_html_renders_as_text(md, value):
    html = md.render(text(value))
    # The only tags in the rendered output are the paragraph's own.
    assert re.sub(r"</?p>", "", html).count("<") == 0, html


def test_text_escapes_existing_entities():
    # "&lt;" typed by a user must stay the four characters "&lt;", not become "<"
    assert text("&lt;b&gt;") == "&amp;lt;b&amp;gt;"


@pytest.mark.parametrize("value", ["[click](https://evil.example)", "![x](https://evil.example/x.png)",
                                   "*bold* _it_ ~~s~~", "`code`"])
def test_text_markdown_syntax_is_inert(md, value):
    html = md.render(text(value))
    assert not re.search(r"<(a|img|em|strong|code|s|del)\b", html), html


# =========================================================================== text(): mentions / issues


@pytest.mark.parametrize(
    "value, expected",
    [
        ("@user", "@" + WJ + "user"),
        ("ping @octocat now", "ping @" + WJ + "octocat now"),
        ("(@octocat)", "(@" + WJ + "octocat)"),
        ("@org/team", "@" + WJ + "org/team"),
        ("@a @b", "@" + WJ + "a @" + WJ + "b"),
    ],
)
def test_text_neutralizes_mentions(value, expected):
    assert text(value) == expected


@pytest.mark.parametrize(
    "value, expected",
    [
        ("#123", "#" + WJ + "123"),
        ("fixes #42.", "fixes #" + WJ + "42."),
        ("(#7)", "(#" + WJ + "7)"),
    ],
)
def test_text_neutralizes_issue_refs(value, expected):
    assert text(value) == expected


@pytest.mark.parametrize("value", ["ndcg@10", "recall@5", "tickets/mrr@10", "user@example.com", "C#", "#tag"])
def test_text_leaves_non_links_readable(value):
    out = text(value)
    assert WJ not in out
    assert out == value


def test_text_mention_inside_metric_id_untouched_but_word_start_neutralized():
    out = text("ndcg@10 by @alice")
    assert out == "ndcg@10 by @" + WJ + "alice"
    assert out.count(WJ) == 1


# =========================================================================== text(): one line, limit


@pytest.mark.parametrize("value", ["a\nb", "a\r\nb", "a\rb", "a\n\n\nb", "a\tb", "  a   b  "])
def test_text_collapses_whitespace_to_one_line(value):
    assert text(value) == "a b"


def test_text_accepts_non_strings():
    assert text(0.5) == "0.5"
    assert text(None) == "None"


def test_text_truncates_with_ellipsis_at_limit():
    out = text("x" * 100, limit=10)
    assert out == "x" * 9 + "…"
    assert len(out) == 10


def test_text_under_limit_untouched():
    assert text("short", limit=5) == "short"
    assert text("short", limit=100) == "short"


def test_text_truncates_before_escaping():
    # raw "a|b|c|d" (7 chars) cut to 4 -> "a|b…", then the pipe is escaped.
    # Cutting after escaping could leave a dangling backslash or half an entity.
    assert text("a|b|c|d", limit=4) == "a\\|b…"
    # raw "<<<<<<" cut to 3 -> "<<…" -> two whole entities
    assert text("<<<<<<", limit=3) == "&lt;&lt;…"


def test_text_limit_counts_collapsed_text():
    # "a \n\n b" collapses to "a b" (3 chars) which fits limit 3
    assert text("a \n\n b", limit=3) == "a b"


# =========================================================================== code()


def fence_of(out: str) -> str:
    return re.match(r"`+", out).group(0)


def assert_code_span_closed_only_at_end(out: str):
    fence = fence_of(out)
    assert out.endswith(fence)
    inner = out[len(fence): len(out) - len(fence)]
    assert inner, out
    # No run of exactly len(fence) backticks inside: it would close the span early.
    assert len(fence) not in {len(run) for run in re.findall(r"`+", inner)}, out
    # The closing fence is not glued to further backticks from the content.
    assert not inner.endswith("`") and not inner.startswith("`"), out


@pytest.mark.parametrize("value", ["abc", "a`b", "a``b", "``x```", "`start", "end`", "`", "```", "` both `"])
def test_code_cannot_be_closed_early(value):
    assert_code_span_closed_only_at_end(code(value))


@pytest.mark.parametrize("value", ["abc", "a`b", "a``b", "``x```", "`start", "end`", "`", "```", "a | b `|` c"])
def test_code_renders_as_one_code_span_with_the_value(md, value):
    tokens = md.parseInline(code(value))[0].children
    assert [t.type for t in tokens] == ["code_inline"], tokens
    assert tokens[0].content == value.replace("|", "¦")


def test_code_simple():
    assert code("stsb/spearman") == "`stsb/spearman`"


@pytest.mark.parametrize("value", ["a|b", "|", "x `|` y"])
def test_code_contains_no_raw_pipe(value):
    assert "|" not in code(value)


def test_code_in_table_cell_keeps_the_row(md):
    cells = table_cells(md, code("a|b`c|d"))
    assert len(cells) == 2
    assert cells[1] == "END"


def test_code_is_one_line():
    assert code("a\nb\r\nc") == "`a b c`"


def test_code_truncates_with_ellipsis():
    out = code("y" * 50, limit=8)
    assert out == "`" + "y" * 7 + "…" + "`"


def test_code_html_is_literal_inside_span(md):
    html = md.render(code("<script>x</script>"))
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


@pytest.mark.parametrize("value,broken", [
    ("x-@octocat", "x-@\u2060octocat"),      # GitHub: "(?:^|\\W)@name" is a mention
    ("+@octocat", "+@\u2060octocat"),
    ("see octo/repo#12", "see octo/repo#\u206012"),  # a cross-repository reference
    ("a#1", "a#\u20601"),
    ("fixes GH-12", "fixes GH-\u206012"),
])
def test_text_breaks_every_mention_and_issue_reference(value, broken):
    assert text(value) == broken


@pytest.mark.parametrize("raw", ["# heading", "###### h", "12. item", "3) item", "- item", "+ item",
                                 "$\\Huge{x}$ and $$y$$"])
def test_text_cannot_start_a_block_or_math(raw):
    import cmarkgfm

    rendered = cmarkgfm.github_flavored_markdown_to_html("- " + text(raw))
    assert rendered.count("<li>") == 1 and "<h" not in rendered and "<ol" not in rendered
    assert rendered.count("<ul>") == 1
    assert rendered.count("$") == raw.count("$")  # dollars stay text: GitHub's math needs them unescaped
    assert text(raw).count("$") == text(raw).count("\\$")
