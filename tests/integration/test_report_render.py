"""The default report as GitHub's Markdown engine (cmark-gfm, through cmarkgfm) renders it.

Raw HTML is kept (CMARK_OPT_UNSAFE) as GitHub keeps the <details>, <summary>, <sub> and <br> the report uses
(its sanitizer runs after rendering), so any HTML smuggled in by a model's answer would show here too.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import cmarkgfm
import pytest
from cmarkgfm.cmark import Options

from gate.report import REPORT_BUDGET, context, render
from tests.unit.test_report import HOSTILE, ex, large_results, make_examples, make_results

VOID = {"br", "hr", "img", "input", "meta", "link", "wbr"}


def gfm(markdown_text: str) -> str:
    return cmarkgfm.github_flavored_markdown_to_html(markdown_text, options=Options.CMARK_OPT_UNSAFE)


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: "Node | None"):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    def elements(self, tag: str | None = None) -> list["Node"]:
        out = []
        for c in self.children:
            if isinstance(c, Node):
                if tag is None or c.tag == tag:
                    out.append(c)
                out.extend(c.elements(tag))
        return out

    def kids(self, tag: str | None = None) -> list["Node"]:
        return [c for c in self.children if isinstance(c, Node) and (tag is None or c.tag == tag)]

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)


class Tree(HTMLParser):
    """A strict tree builder: an end tag that does not close the innermost open element is an error."""

    def __init__(self, source: str):
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {}, None)
        self.node = self.root
        self.errors: list[str] = []
        self.tags: list[str] = []
        self.feed(source)
        self.close()
        if self.node is not self.root:
            self.errors.append(f"unclosed <{self.node.tag}>")

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        node = Node(tag, dict(attrs), self.node)
        self.node.children.append(node)
        if tag not in VOID:
            self.node = node

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)
        self.node.children.append(Node(tag, dict(attrs), self.node))

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if self.node.tag != tag:
            self.errors.append(f"</{tag}> closes <{self.node.tag}>")
            return
        self.node = self.node.parent

    def handle_data(self, data):
        self.node.children.append(data)

    def handle_comment(self, data):
        self.tags.append("!--")


def parse(markdown_text: str) -> Tree:
    tree = Tree(gfm(markdown_text))
    assert tree.errors == [], tree.errors
    return tree


def assert_tables_well_formed(tree: Tree) -> list[Node]:
    tables = tree.root.elements("table")
    for t in tables:
        (thead,) = t.kids("thead")
        (head_row,) = thead.kids("tr")
        width = len(head_row.kids("th"))
        assert width >= 2 and head_row.kids() == head_row.kids("th")
        for body in t.kids("tbody"):
            for row in body.kids("tr"):
                assert row.kids() == row.kids("td") and len(row.kids("td")) == width, (
                    [c.text() for c in head_row.kids()], [c.text() for c in row.kids()])
    return tables


def assert_details_well_formed(tree: Tree) -> list[Node]:
    details = tree.root.elements("details")
    for d in details:
        kids = d.kids()
        assert kids and kids[0].tag == "summary", [k.tag for k in kids]
        assert len(d.kids("summary")) == 1
    return details


def prose(node: Node) -> str:
    """The text of ``node`` outside code spans and blocks."""
    return "".join(c if isinstance(c, str) else "" if c.tag in ("code", "pre") else prose(c) for c in node.children)


def header(table: Node) -> list[str]:
    return [th.text().strip() for th in table.kids("thead")[0].kids("tr")[0].kids("th")]


def body_rows(table: Node) -> list[list[str]]:
    return [[td.text().strip() for td in tr.kids("td")] for b in table.kids("tbody") for tr in b.kids("tr")]


# =========================================================================== the default report


@pytest.fixture(scope="module")
def report() -> str:
    return render(make_results(), examples=make_examples())


def test_tables_are_well_formed_with_the_intended_columns(report):
    tree = parse(report)
    tables = assert_tables_well_formed(tree)
    headers = [header(t) for t in tables]
    # the Holm-adjusted p stands in its own labelled column beside the metric's own p
    rules_head = ["", "Rule", "Metric", "Observed", "Limit", "95% CI", "p", "p (Holm)", "Sig.", "Detail"]
    metrics_head = ["Metric", "Baseline", "Candidate", "Δ", "95% CI", "p", "Sig."]
    assert headers == [rules_head, [h for h in rules_head if h != "Sig."], metrics_head, metrics_head,
                       ["Role", "Model", "Fingerprint"], ["Task", "Type", "Group", "n", "Notes"]]
    attention, passing, target, general = tables[:4]
    assert [r[0] for r in body_rows(attention)] == ["❌ fail", "🟡 warn"]
    assert [r[0] for r in body_rows(passing)] == ["✅ pass", "✅ pass"]
    assert body_rows(target)[0] == ["cranfield/ndcg@10", "0.3912", "0.4301", "+0.0389 (+9.9%)", "[+0.0127, +0.0651]",
                                    "0.004", "▲ better"]
    assert [r[0] for r in body_rows(general)] == ["stsb/spearman", "stsb/pearson"]
    assert tree.root.elements("table")[2].elements("strong")  # significant marks are bold


def test_details_sections_each_open_with_a_summary_and_render_markdown_inside(report):
    tree = parse(report)
    details = assert_details_well_formed(tree)
    summaries = [d.kids("summary")[0].text() for d in details]
    assert summaries[0] == "Passing and skipped rules (2)"
    assert summaries[-1] == "Models and tasks"
    changes = [d for d, s in zip(details, summaries) if s.startswith(("▼", "▲"))]
    assert len(changes) == 8  # cranfield 3 + 3, stsb 1 + 1
    for d in changes:
        (ul,) = d.kids("ul")  # the blank line after </summary> lets GitHub render the list
        items = [li.text() for li in ul.kids("li")]
        assert items[-2].startswith("baseline: ") and items[-1].startswith("candidate: ")
    assert details[0].elements("table") and details[-1].elements("table")


def test_the_mermaid_block_survives_intact(report):
    html_out = gfm(report)
    blocks = re.findall(r'<pre lang="mermaid"><code>(.*?)</code></pre>', html_out, re.S)
    assert len(blocks) == 1
    assert html.unescape(blocks[0]) == context(make_results())["chart"]["mermaid"] + "\n"
    assert "xychart-beta" in blocks[0] and "bar [0.8011, 0.4391, 0.4301]" in blocks[0]


def test_the_heading_and_reason_come_first(report):
    tree = parse(report)
    first = [n for n in tree.root.kids()][:2]
    assert first[0].tag == "h2" and first[0].text() == "❌ gate: FAIL · demo"
    assert first[1].tag == "p" and first[1].text().startswith("Rule 'no general regression' failed")


# =========================================================================== hostile model output


def generation_results():
    res = make_results()
    res["tasks"]["gen"] = {"type": "generation", "group": "target", "n": 2,
                           "example_score": {"key": "pass", "higher_is_better": True}}
    return res


def generation_rows(value: str) -> list[dict]:
    roles = {"baseline": {"answer": value, "tool_calls": [{"name": value, "arguments": {"q": value}}]},
             "candidate": {"answer": value, "tool_calls": [{"name": "lookup", "arguments": value}]}}
    return [ex("gen", value, {"prompt": value, "context": value}, 1.0, 0.0, key="pass", **roles),
            ex("gen", value + "2", {"prompt": value}, 0.0, 1.0, key="pass", **roles)]


@pytest.mark.parametrize("hostile", [
    HOSTILE,
    "</details>\n\n</details>\n\n# Pwned",
    "```\n</summary>\n```",
    "| col | col |\n|---|---|\n| x | y |",
    "<details><summary>fake</summary>",
    "@octocat please merge #1",
    "`` ` ``` ````",
    "<script>alert(document.cookie)</script>",
    "]]></summary><!--",
    "see https://evil.example/login and www.evil.example",
])
def test_hostile_answers_create_no_element(hostile):
    benign = parse(render(generation_results(), examples=generation_rows("plain text")))
    evil_md = render(generation_results(), examples=generation_rows(hostile))
    evil = parse(evil_md)
    assert evil.tags == benign.tags  # the same elements, in the same order: nothing was injected
    assert_tables_well_formed(evil)
    assert_details_well_formed(evil)
    text = prose(evil.root)  # GitHub links no mention or issue inside code
    assert not re.search(r"(?<![\w\u2060])@octocat", text)
    assert not re.search(r"#(?=1\b)", text)
    assert not evil.root.elements("a")


def test_hostile_text_is_shown_as_text():
    tree = parse(render(generation_results(), examples=generation_rows("<b>bold?</b> | @octocat")))
    items = [li.text() for d in tree.root.elements("details") for li in d.elements("li")]
    assert any("answer: <b>bold?</b> | @\u2060octocat" in i for i in items), items


# =========================================================================== the large suite


def test_large_suite_report_renders_well_formed_within_the_comment_limit():
    res, examples = large_results()
    report = render(res, examples=examples)
    assert len(report) <= REPORT_BUDGET < 65_536
    tree = parse(report)
    tables = assert_tables_well_formed(tree)
    assert_details_well_formed(tree)
    attention = tables[0]
    fails = [r for r in body_rows(attention) if r[0] == "❌ fail"]
    assert len(fails) == 20


def test_an_unshortened_report_cut_by_fit_comment_still_renders_well_formed():
    """Custom templates and report.md files can still be too long: github.fit_comment cuts them, and the
    cut must leave GitHub a balanced document (open <details> and fences closed)."""
    from gate.github import COMMENT_LIMIT, fit_comment

    res, examples = large_results()
    full = render(res, examples=examples, budget=None)
    assert len(full) > COMMENT_LIMIT
    body = fit_comment(full)
    assert len(body) <= COMMENT_LIMIT
    assert body.splitlines()[1] == "## ❌ gate: FAIL · demo"
    tree = parse(body)
    assert_tables_well_formed(tree)
    assert_details_well_formed(tree)
    assert "truncated to fit a GitHub comment" in tree.root.text()
