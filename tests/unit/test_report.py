"""Unit tests for gate.report: the default report's sections, numbers, biggest changes and size budget."""

from __future__ import annotations

import copy
import json
import re

import pytest

from gate.errors import BadInput
from gate.report import (LEVELS, REPORT_BUDGET, context, fixed, interval, load_examples, plain, pvalue, render)

WJ = "\u2060"
HOSTILE = ("</details></summary><script>alert(1)</script> | a | b | ``` `x` @octocat #12 <!-- [x](http://e.example) "
           "<img src=x onerror=1>\n\n# heading\n- item\n</td></tr></table>")


# =========================================================================== builders


def metric(b, c, *, hib=True, n=200, ci=None, p=None, note=None):
    m = {"baseline": b, "candidate": c, "delta": None if b is None or c is None else c - b,
         "higher_is_better": hib, "n": n, "ci": ci, "p_value": p, "se": None, "test": "sign-flip"}
    if note:
        m["stats_note"] = note
    return m


def rule(name, mid, status, observed, limit, condition="max_drop", message=None, **extra):
    r = {"name": name, "metric": mid, "status": status, "observed": observed, "limit": limit,
         "message": message or f"{mid}: {status}", "condition": condition, "severity": "block",
         "significant": None, "ci": None, "p_value": None, "p_adjusted": None, "mde": None,
         "examples_needed": None, "n": None, "warning": None}
    r.update(extra)
    return r


def make_results(**over):
    """A demo-like run: retrieval (target) and STS (general), one failing, one warned, two passing rules."""
    res = {
        "schema_version": 1, "suite": "demo", "verdict": "fail",
        "reason": "Rule 'no general regression' failed: stsb/spearman dropped by 2.34%, allowed drop ≤ 2.00%.",
        "gate_version": "0.6.0", "stats": {"confidence": 0.95, "resamples": 2000, "seed": 0},
        "models": {"baseline": {"spec": "st:base", "fingerprint": "fb"}, "candidate": {"spec": "st:cand", "fingerprint": "fc"}},
        "tasks": {
            "cranfield": {"type": "retrieval", "group": "target", "n": 113,
                          "example_score": {"key": "ndcg@10", "higher_is_better": True}},
            "stsb": {"type": "sts", "group": "general", "n": 1379,
                     "example_score": {"key": "rank_error", "higher_is_better": False}},
        },
        "metrics": {
            "cranfield/ndcg@10": metric(0.3912, 0.4301, ci=[0.0127, 0.0651], p=0.004),
            "cranfield/recall@10": metric(0.4470, 0.4391, ci=[-0.0271, 0.0110], p=0.412),
            "cranfield/mrr@10": metric(0.5581, 0.6012),
            "stsb/spearman": metric(0.8203, 0.8011, ci=[-0.0291, -0.0093], p=0.0004),
            "stsb/pearson": metric(0.8311, 0.8311, ci=[0.0, 0.0], p=1.0),
            "cranfield/latency_ms": metric(1500.0, 1200.0, hib=False, n=5, note="too few examples (5 < 10)"),
        },
        "rules": [
            rule("target improves", "cranfield/ndcg@10", "pass", 0.0994, 0.05, "min_delta",
                 "cranfield/ndcg@10 changed by +9.94% in its good direction, required ≥ +5.00%",
                 ci=[0.0325, 0.1664], p_value=0.004, p_adjusted=0.004, significant=True, n=113,
                 warning="n = 113 cannot detect a 5% change; about 170 examples needed"),
            rule("no general regression", "stsb/spearman", "fail", 0.0234, 0.02, "max_drop",
                 "stsb/spearman dropped by 2.34%, allowed drop ≤ 2.00%", ci=[0.0113, 0.0355], p_value=0.0004,
                 p_adjusted=0.0012, significant=True),
            rule("recall holds", "cranfield/recall@10", "warn", 0.0079, 0.0, "max_drop",
                 "cranfield/recall@10 dropped by 0.0079, allowed drop ≤ 0", ci=[-0.0110, 0.0271], p_value=0.412,
                 p_adjusted=0.412, significant=False),
            rule("usable", "stsb/spearman", "pass", 0.8011, 0.7, "min", "stsb/spearman = 0.8011, required ≥ 0.7"),
        ],
        "errors": [],
    }
    res.update(over)
    return res


def ex(task, id_, text, b, c, key="ndcg@10", **roles):
    return {"task": task, "id": id_, "text": text,
            "baseline": None if b is None else {key: b, **roles.get("baseline", {})},
            "candidate": None if c is None else {key: c, **roles.get("candidate", {})}}


def make_examples():
    rows = [ex("cranfield", f"q{i}", {"query": f"query number {i}"}, 0.5, 0.5 + d)
            for i, d in enumerate([-0.4, -0.1, 0.0, 0.3, 0.05, -0.2, 0.2, 0.0])]
    rows += [ex("stsb", f"p{i}", {"sentence1": f"a {i}", "sentence2": f"b {i}"}, 0.1, 0.1 + d, key="rank_error")
             for i, d in enumerate([0.3, -0.05, 0.0])]
    rows.append(ex("cranfield", "failed", {"query": "x"}, 0.5, None))
    rows.append({"task": "cranfield", "id": "nokey", "text": {"query": "y"}, "baseline": {"recall@10": 1.0},
                 "candidate": {"recall@10": 0.0}})
    rows.append({"task": "unknown-task", "id": "z", "baseline": {"ndcg@10": 0}, "candidate": {"ndcg@10": 1}})
    return rows


def section(report: str, title: str) -> str:
    """The text of a ### section, up to the next ### heading or the folded models list."""
    start = report.index(f"### {title}")
    ends = [i for i in (report.find("\n### ", start + 4), report.find("<details><summary>Models", start)) if i > 0]
    return report[start: min(ends) if ends else len(report)]


def table_rows(block: str) -> list[list[str]]:
    """The body rows of the first Markdown table in ``block``, split on live pipes."""
    lines = [ln for ln in block.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", ln)[1:-1]] for ln in lines[2:]]


# =========================================================================== numbers


@pytest.mark.parametrize("value, expected", [
    (0.123456, "0.1235"), (12.3456, "12.35"), (14339.4969, "14339.5"), (0.0000235, "0.0000235"),
    (1e-12, "0.000000000001"), (-0.5, "−0.5000"), (0, "0.0000"), (None, "n/a"), (float("nan"), "n/a"),
    (True, "n/a"), (1e20, "100000000000000000000.0"),
])
def test_fixed_is_fixed_point_with_a_real_minus(value, expected):
    out = fixed(value)
    assert out == expected
    assert "e" not in out.lower() or out == "n/a"


def test_fixed_signed_and_zero():
    assert fixed(0.0123, 4, sign=True) == "+0.0123"
    assert fixed(-0.0123, 4, sign=True) == "−0.0123"
    # a value that is not 0 never reads as zero ("±0.0000" hid which side of 0 a CI bound is on)
    assert fixed(-0.00001, 4, sign=True) == "−0.000010"
    assert fixed(0.0000449, 4, sign=True) == "+0.000045"
    assert fixed(-0.0, 4, sign=True) == "0.0000" and fixed(0.0, 4, sign=True) == "0.0000"
    assert interval([-0.0028, 0.00003], 4) == "[−0.0028, +0.000030]"


@pytest.mark.parametrize("value, expected", [(0.0004, "<0.001"), (0.001, "0.001"), (0.0345, "0.034"),
                                             (0.0499, "0.049"), (0.029, "0.029"), (0.0501, "0.050"), (1.0, "1.000"),
                                             (None, "n/a")])
def test_pvalue(value, expected):
    assert pvalue(value) == expected


def test_interval_and_plain():
    assert interval([-0.012, 0.004], 3) == "[−0.012, +0.004]"
    assert interval([-0.0121, 0.0345], percent=True) == "[−1.21%, +3.45%]"
    assert interval(None) == "n/a" and interval([None, 1]) == "n/a"
    assert plain(0.05) == "0.05" and plain(5.0) == "5" and plain(1e-7) == "0.0000001" and plain(-2) == "−2"


# =========================================================================== the first lines, rules


def test_first_lines_are_the_verdict_and_the_reason():
    lines = render(make_results()).splitlines()
    assert lines[0] == '<!-- gate-report suite="demo" -->'
    assert lines[1] == "## ❌ gate: FAIL · demo"
    assert lines[2] == "" and lines[3].startswith("Rule 'no general regression' failed: stsb/spearman dropped")


def test_rules_needing_attention_come_first_with_ci_p_and_mark_and_passing_ones_are_folded():
    report = render(make_results())
    rules = section(report, "Rules")
    attention, folded = rules.split("<details><summary>Passing and skipped rules (2)</summary>")
    rows = table_rows(attention)
    assert [r[0] for r in rows] == ["❌ fail", "🟡 warn"]
    fail = rows[0]
    # the change in the metric's good direction, named (relative: the message has %); the limit as an allowed
    # drop; the CI in the units of the observed change; the metric's own p beside the Holm-adjusted one; mark
    assert fail[1:5] == ["no general regression", "`stsb/spearman`", "−2.34% (dropped)", "drop ≤ 2%"]
    assert fail[5] == "[−3.55%, −1.13%]"
    assert fail[6:8] == ["<0.001", "0.001"]
    assert fail[8] == "**▼ worse**"
    warn = rows[1]
    assert warn[3:9] == ["−0.0079 (dropped)", "drop ≤ 0", "[−0.0271, +0.0110]", "0.412", "—", "▽ n.s."]
    assert "| ✅ pass | target improves |" in folded and "| ✅ pass | usable |" in folded
    assert "| Observed | Limit | 95% CI | p | p (Holm) | Sig. | Detail |" in attention
    assert "**p (Holm)**: the p-value each significance rule decides on, adjusted for the 1 significance check " \
           "of blocking rules taken together (Holm–Bonferroni)" in report


def test_all_rules_passing_says_so_and_no_thresholds_says_so():
    res = make_results(verdict="pass", reason="Every blocking rule holds.",
                       rules=[rule("ok", "stsb/spearman", "pass", 0.8, 0.7, "min")])
    assert "All 1 rule checks passed." in render(res)
    assert "_No thresholds were given: no rule was checked._" in render(make_results(rules=[]))


def test_sample_size_warnings_are_listed_once_per_metric():
    res = make_results()
    res["rules"].append(copy.deepcopy(res["rules"][0]))  # the same warning twice
    block = render(res).split("**Sample size**", 1)[1].split("###", 1)[0]
    items = [ln for ln in block.splitlines() if ln.startswith("- ")]
    assert items == ["- `cranfield/ndcg@10` (target improves): n = 113 cannot detect a 5% change; about 170 "
                     "examples needed"]


def test_no_sample_size_section_without_warnings():
    res = make_results()
    for r in res["rules"]:
        r["warning"] = None
    assert "Sample size" not in render(res)


# =========================================================================== metrics


def metric_row(report: str, mid: str) -> list[str]:
    (line,) = [ln for ln in report.splitlines() if ln.startswith(f"| `{mid}` |")]
    return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]


def test_metric_rows_have_delta_ci_p_and_significance_marks():
    report = render(make_results())
    assert "| Metric | Baseline | Candidate | Δ | 95% CI | p | Sig. |" in report
    assert metric_row(report, "cranfield/ndcg@10") == [
        "`cranfield/ndcg@10`", "0.3912", "0.4301", "+0.0389 (+9.9%)", "[+0.0127, +0.0651]", "0.004", "**▲ better**"]
    assert metric_row(report, "stsb/spearman")[4:] == ["[−0.0291, −0.0093]", "<0.001", "**▼ worse**"]
    assert metric_row(report, "cranfield/recall@10")[-1] == "▽ n.s."   # worse, p = 0.41
    assert metric_row(report, "cranfield/mrr@10")[-3:] == ["n/a", "n/a", "△"]  # better, not tested
    assert metric_row(report, "stsb/pearson")[-1] == "·"  # no change
    latency = metric_row(report, "cranfield/latency_ms")
    assert latency[1:4] == ["1500.0", "1200.0", "−300.0 (−20.0%)"]
    assert latency[4] == "n/a¹" and latency[-1] == "△"  # lower is better; the stats note is a footnote
    assert "¹ too few examples (5 &lt; 10)" in report
    assert report.index("**target**") < report.index("`cranfield/ndcg@10` | 0.3912")


def test_alpha_follows_the_confidence_level():
    res = make_results()
    res["metrics"]["cranfield/ndcg@10"]["p_value"] = 0.03
    assert metric_row(render(res), "cranfield/ndcg@10")[-1] == "**▲ better**"
    res["stats"] = {"confidence": 0.99, "resamples": 500, "seed": 0}
    report = render(res)
    assert "| 99% CI |" in report and "p &lt; 0.01" in report
    assert metric_row(report, "cranfield/ndcg@10")[-1] == "△ n.s."
    assert metric_row(report, "stsb/spearman")[-1] == "**▼ worse**"  # p = 0.0004


# =========================================================================== chart


def chart(report: str) -> str | None:
    m = re.search(r"```mermaid\n(.*?)\n```", report, re.S)
    return m.group(1) if m else None


def test_chart_shows_the_rule_checked_metrics_between_0_and_1():
    text = chart(render(make_results()))
    assert "xychart-beta" in text and 'y-axis "score" 0 --> 1' in text
    assert 'x-axis ["stsb/spearman", "cranfield/recall@10", "cranfield/ndcg@10"]' in text  # failing first, once each
    assert "bar [0.8011, 0.4391, 0.4301]" in text
    assert "line [0.8203, 0.4470, 0.3912]" in text


def test_chart_keeps_checked_scores_in_0_1_and_at_most_8():
    res = make_results()
    res["metrics"] = {f"t/m{i}": metric(0.1 * (i % 10), 0.05, p=0.5) for i in range(12)}
    res["metrics"]["t/latency"] = metric(1200.0, 900.0, hib=False)
    res["metrics"]["t/cost_usd"] = metric(0.002, 0.003, hib=False)  # below 1, but not a score
    res["metrics"]["t/pass_rate[a]"] = metric(0.5, 0.6)  # a category slice a rule checks is a headline
    res["metrics"]["t/tiny"] = metric(1e-7, 2e-7)
    res["tasks"] = {"t": {"type": "generation", "group": "g", "n": 10}}
    res["rules"] = [rule(f"r{mid}", mid, "pass", 0, 1, "min") for mid in res["metrics"]]
    text = chart(render(res))
    labels = re.search(r"x-axis \[(.*)\]", text).group(1)
    assert "latency" not in labels and "cost" not in labels
    assert labels.count('"') == 16
    res["rules"] = [rule("rt", "t/tiny", "pass", 0, 1, "min"), rule("ra", "t/pass_rate[a]", "pass", 0, 1, "min")]
    text = chart(render(res))
    assert "bar [0.0000, 0.6000]" in text and "e-" not in text  # fixed point, never exponent
    assert 'x-axis ["t/tiny", "t/pass_rate_a_"]' in text


def test_no_chart_without_rules_or_without_metrics_in_0_1():
    assert chart(render(make_results(rules=[]))) is None
    res = make_results(rules=[rule("lat", "cranfield/latency_ms", "pass", 0.8, 2, "max_ratio")])
    assert chart(render(res)) is None


def test_chart_labels_cannot_break_the_mermaid_syntax():
    mid = 'gen/pass_rate[a"], [b, c]%%x`y\n]'
    res = make_results(metrics={mid: metric(0.5, 0.6)}, tasks={"gen": {"type": "generation", "group": "g", "n": 3}},
                       rules=[rule("r", mid, "pass", 0.6, 0.5, "min")])
    res["metrics"]["gen/pass_rate"] = metric(0.5, 0.6)
    res["rules"].append(rule("r2", 'gen/pass_rate', "pass", 0.6, 0.5, "min"))
    text = chart(render(res))
    (axis,) = [ln for ln in text.splitlines() if "x-axis" in ln]
    inner = axis.split("[", 1)[1].rsplit("]", 1)[0]
    assert inner.count('"') == 4 and inner.endswith('"gen/pass_rate"')  # two labels, nothing broke out
    from gate.report.markdown import mermaid_label
    label = mermaid_label(mid)
    assert label.startswith('"') and label.endswith('"')
    assert not set(label[1:-1]) & set('"[],`%\n')


# =========================================================================== biggest changes


def changes_block(report: str) -> str:
    return section(report, "Biggest changes")


def summaries(block: str) -> list[str]:
    return re.findall(r"<details><summary>(.*?)</summary>", block)


def test_biggest_changes_rank_by_the_example_score_in_its_good_direction():
    report = render(make_results(), examples=make_examples())
    block = changes_block(report)
    cran = block.split("**cranfield**", 1)[1].split("**stsb**", 1)[0]
    assert "by `ndcg@10` (higher is better): 3 worse, 3 better, 2 unchanged, 2 not comparable" in cran
    ids = [s.split(" · ")[1] for s in summaries(cran)]
    # 3 most worse, then 3 most better; zeros left out; each id says what it is (a query id, a data line)
    assert ids == ["query q0", "query q5", "query q1", "query q3", "query q6", "query q4"]
    assert summaries(cran)[0] == "▼ −0.4000 · query q0 · ndcg@10 0.5000 → 0.1000"
    sts = block.split("**stsb**", 1)[1]
    assert "(lower is better): 1 worse, 1 better, 1 unchanged" in sts
    assert [s.split(" · ")[1] for s in summaries(sts)] == ["line p0", "line p1"]  # rank_error up = worse
    assert summaries(sts)[0].startswith("▼ −0.3000 · line p0")


def test_biggest_change_details_hold_the_texts_and_both_outputs_with_a_blank_line_after_the_summary():
    rows = [ex("gen", "c1", {"prompt": "Book a flight"}, 1.0, 0.0, key="pass",
               baseline={"answer": "Sure, booked.", "tool_calls": [{"name": "book", "arguments": {"to": "LIS"}}]},
               candidate={"answer": "I cannot help.", "tool_calls": []})]
    res = make_results(tasks={"gen": {"type": "generation", "group": "target", "n": 1,
                                      "example_score": {"key": "pass", "higher_is_better": True}}})
    block = changes_block(render(res, examples=rows))
    details = block[block.index("<details>"):]
    assert re.match(r"<details><summary>[^\n]*</summary>\n\n- ", details)
    assert "- **prompt**: Book a flight" in details
    assert "- **baseline**: `pass` = 1.0000<br>tool calls: `book({\"to\": \"LIS\"})`<br>answer: Sure, booked." in details
    assert "- **candidate**: `pass` = 0.0000<br>answer: I cannot help." in details
    assert details.rstrip().endswith("</details>")


def test_long_texts_are_shortened():
    rows = [ex("gen", "c1", {"prompt": "p" * 5000}, 1.0, 0.0, key="pass",
               baseline={"answer": "a" * 5000}, candidate={"answer": "b" * 5000})]
    res = make_results(tasks={"gen": {"type": "generation", "group": "target", "n": 1,
                                      "example_score": {"key": "pass", "higher_is_better": True}}})
    block = changes_block(render(res, examples=rows))
    assert "p" * (LEVELS[0].text - 1) + "…" in block and "p" * LEVELS[0].text not in block
    assert "a" * (LEVELS[0].text - 1) + "…" in block and "b" * (LEVELS[0].text - 1) + "…" in block


def test_no_biggest_changes_without_examples_or_example_score():
    assert "Biggest changes" not in render(make_results())
    res = make_results()
    for t in res["tasks"].values():
        del t["example_score"]
    assert "Biggest changes" not in render(res, examples=make_examples())


def test_hostile_example_text_stays_inert():
    rows = [ex("cranfield", HOSTILE, {"query": HOSTILE, HOSTILE: "field name"}, 0.9, 0.1,
               baseline={"answer": HOSTILE, "top": [HOSTILE]},
               candidate={"answer": HOSTILE, "tool_calls": [{"name": HOSTILE, "arguments": HOSTILE}]})]
    report = render(make_results(), examples=rows)
    assert "top: `</details></summary><script>a…`" in report  # in a code span, where it is text
    report = re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "CODE", report)  # what is left is Markdown text
    block = changes_block(report)
    assert "<script" not in report and "<img" not in report and "<!--" not in report.split("\n", 1)[1]
    assert block.count("<details>") == block.count("</details>") == 1
    assert block.count("<summary>") == block.count("</summary>") == 1
    assert "@octocat" not in report and f"@{WJ}octocat" in report
    assert "#12" not in report
    body = block.splitlines()[1:]
    assert not [ln for ln in body if ln.startswith(("#", "```", "<t", "<s", "<!"))]  # no heading, fence or HTML
    assert [ln for ln in body if ln.startswith("<")] == [ln for ln in body if ln.startswith(("<details><summary>",
                                                                                              "</details>"))]


# =========================================================================== examples.jsonl


def test_load_examples(tmp_path):
    assert load_examples(tmp_path / "missing.jsonl") is None
    path = tmp_path / "examples.jsonl"
    path.write_text('{"task": "t", "id": "1"}\n\n{"task": "t", "id": "2"}\n', encoding="utf-8")
    assert [r["id"] for r in load_examples(path)] == ["1", "2"]
    path.write_text('{"task": "t"}\n{"task": \n', encoding="utf-8")
    with pytest.raises(BadInput) as err:
        load_examples(path)
    assert err.value.where == str(path) and err.value.location == "2" and "not valid JSON" in str(err.value)
    path.write_text('{"task": "t"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(BadInput, match="expected a JSON object") as err:
        load_examples(path)
    assert err.value.location == "2"
    path.write_bytes(b'{"task": "\xff"}\n')
    with pytest.raises(BadInput, match="UTF-8"):
        load_examples(path)


# =========================================================================== context for custom templates


def test_context_keeps_the_documented_keys_and_adds_new_ones():
    ctx = context(make_results(), make_examples())
    for key in ("results", "suite", "verdict", "reason", "icon", "marker", "rules", "rule_counts", "metric_groups",
                "metric_slices", "models", "tasks", "errors"):
        assert key in ctx, key
    for key in ("rules_attention", "rules_passing", "sample_warnings", "chart", "changes", "notes", "alpha",
                "ci_label", "hidden", "limits"):
        assert key in ctx, key
    row = ctx["metric_groups"]["target"][0]
    assert {"id", "baseline", "candidate", "delta", "relative", "better", "significant", "cells"} <= set(row)
    assert [r["status"] for r in ctx["rules"]] == ["fail", "warn", "pass", "pass"]


def test_custom_template_sees_changes_and_chart(tmp_path):
    tpl = tmp_path / "t.md.j2"
    tpl.write_text("{{ marker }}\n{{ changes | length }} {{ chart.metrics | join(',') }} {{ 0.0000012 | fixed }}\n")
    out = render(make_results(), tpl, examples=make_examples())
    assert out.splitlines()[1] == "2 stsb/spearman,cranfield/recall@10,cranfield/ndcg@10 0.00000120"


# =========================================================================== size budget


def large_results(failing=20, metrics_n=3000, rules_n=500, text=2000):
    """3,000 metrics over 30 tasks (a third of them per-category slices), 500 rules, long texts everywhere."""
    long = "x" * text
    tasks, metrics = {}, {}
    for t in range(30):
        tasks[f"task{t}"] = {"type": "generation", "group": ["target", "general", "safety"][t % 3], "n": 50,
                             "notes": [long], "example_score": {"key": "pass", "higher_is_better": True}}
    for i in range(metrics_n):
        t = i % 30
        mid = f"task{t}/m{i}" + (f"[category{i}]" if i % 3 == 0 else "")
        metrics[mid] = metric(0.5, 0.5 + (i % 7 - 3) / 100, ci=[-0.01, 0.02], p=(i % 100) / 100 + 0.0001,
                              note=None if i % 5 else f"note {i % 13}")
    ids = [m for m in metrics if not m.endswith("]")]
    rules = []
    for j in range(rules_n):
        status = "fail" if j < failing else "warn" if j < failing + 30 else "pass"
        rules.append(rule(f"rule {j} " + "y" * 200, ids[j % len(ids)], status, 0.03, 0.01, "max_drop",
                          f"FAILMSG{j} " + long, ci=[0.01, 0.05], p_value=0.01, p_adjusted=0.02,
                          warning=f"n = 50 cannot detect a 1% drop; about {j + 1000} examples needed {long}"))
    res = make_results(tasks=tasks, metrics=metrics, rules=rules, verdict="fail",
                       reason="Rule 'rule 0' failed: a long way (and 19 more).",
                       errors=[f"error {k} " + long for k in range(100)])
    examples = [ex(f"task{k % 30}", f"id{k}", {"prompt": long}, 1.0, float(k % 2), key="pass",
                   baseline={"answer": long}, candidate={"answer": long}) for k in range(3000)]
    return res, examples


def test_large_suite_fits_the_budget_and_keeps_the_verdict_and_every_failing_rule():
    res, examples = large_results()
    report = render(res, examples=examples)
    assert len(report) <= REPORT_BUDGET
    assert report.splitlines()[1] == "## ❌ gate: FAIL · demo"
    assert report.splitlines()[3] == "Rule 'rule 0' failed: a long way (and 19 more)."
    rules = section(report, "Rules")
    for j in range(20):
        assert f"FAILMSG{j} " in rules, j
    assert "more metrics of this group are in results.json" in report
    assert "This report was shortened to fit a GitHub comment (60,000 characters)" in report
    assert report.count("<details>") == report.count("</details>")
    assert render(res, examples=examples, budget=None).__len__() > 10 * REPORT_BUDGET  # it did need shortening


def test_shortening_keeps_rule_checked_metrics_in_the_tables():
    res, _ = large_results(failing=5, rules_n=5)
    report = render(res)
    for r in res["rules"]:
        assert f"| `{r['metric']}` |" in section(report, "Metrics"), r["metric"]


def test_thousands_of_failing_rules_still_fit_with_a_count_of_the_rest():
    res, _ = large_results(failing=2000, rules_n=2000, metrics_n=3000)
    report = render(res)
    assert len(report) <= REPORT_BUDGET
    assert report.splitlines()[1] == "## ❌ gate: FAIL · demo"
    shown = len(re.findall(r"^\| ❌ fail \|", report, re.M))
    assert shown > 20
    assert f"_… and {2000 - shown} more rules that did not pass: see results.json._" in report


def test_small_report_is_not_shortened():
    report = render(make_results(), examples=make_examples())
    assert "shortened" not in report
    assert report == render(make_results(), examples=make_examples(), budget=None)


def test_results_are_not_modified():
    res = make_results()
    before = json.dumps(res, sort_keys=True)
    render(res, examples=make_examples())
    assert json.dumps(res, sort_keys=True) == before


# =========================================================================== markdown helpers used by the report


def test_html_text_is_escaped_for_raw_html_without_backslashes():
    from gate.report.markdown import html_text

    assert html_text('a_b *c* </summary> "q" @bob #3\nx') == (
        "a_b *c* &lt;/summary&gt; &quot;q&quot; @" + WJ + "bob #" + WJ + "3 x")
    assert html_text("y" * 50, 10) == "y" * 9 + "…"


@pytest.mark.parametrize("url", ["https://evil.example/x", "http://evil.example", "HTTPS://EVIL.EXAMPLE",
                                 "www.evil.example"])
def test_text_breaks_bare_urls_so_github_does_not_link_them(url):
    from gate.report.markdown import html_text, text

    for out in (text(f"go to {url} now"), html_text(f"go to {url} now")):
        assert WJ in out
        assert out.replace(WJ, "") == f"go to {url} now"


def test_mermaid_label_keeps_readable_ids():
    from gate.report.markdown import mermaid_label

    assert mermaid_label("cranfield/ndcg@10") == '"cranfield/ndcg@10"'
    assert mermaid_label('a"b[c],d`e%%f\ng', limit=100) == '"a_b_c__d_e__f g"'


def test_in_memory_examples_with_numpy_scalars_and_nan_are_ranked_like_written_ones():
    np = pytest.importorskip("numpy")
    rows = [ex("cranfield", "a", {"query": "a"}, np.float32(0.5), np.float64(0.25)),
            ex("cranfield", "b", {"query": "b"}, float("nan"), 0.3)]
    (task,) = [t for t in context(make_results(), rows)["changes"] if t["task"] == "cranfield"]
    assert task["counts"] == {"worse": 1, "better": 0, "same": 0, "unscored": 1}
    assert task["worse"][0]["summary"] == "▼ −0.2500 · query a · ndcg@10 0.5000 → 0.2500"


# =========================================================================== what the first lines say (issue 16)


def test_the_same_model_is_said_at_the_top():
    from gate.results import mark_same_model
    from gate.suite import ModelSpec

    a, b = ModelSpec("sentence-transformers", "default"), ModelSpec("sentence-transformers", "default")
    res = make_results()
    res["models"]["candidate"]["fingerprint"] = res["models"]["baseline"]["fingerprint"]
    assert mark_same_model(res, [(a, b)]) is True and res["models"]["candidate"]["same_as_baseline"] is True
    lines = render(res).splitlines()
    assert lines[3:5] == ["> [!WARNING]", "> **The candidate is the baseline:** both models have the same fingerprint "
                          "and options, so every difference below is noise and every rule that requires an "
                          "improvement fails for that reason."]
    assert lines[6].startswith("Rule 'no general regression' failed")


@pytest.mark.parametrize("change", ["options", "fingerprint", "missing", "task"])
def test_models_that_differ_are_not_called_the_same(change):
    from gate.results import mark_same_model
    from gate.suite import ModelSpec

    a = ModelSpec("sentence-transformers", "default", options=(("batch_size", 8),))
    b = ModelSpec("sentence-transformers", "default", options=(("batch_size", 64),))  # fetching only: the same
    res = make_results()
    res["models"]["candidate"]["fingerprint"] = res["models"]["baseline"]["fingerprint"]
    if change == "options":
        b = ModelSpec("sentence-transformers", "default", options=(("query_prompt", "query: "),))
    elif change == "fingerprint":
        res["models"]["candidate"]["fingerprint"] = "other"
    elif change == "missing":
        res["models"]["baseline"]["fingerprint"] = res["models"]["candidate"]["fingerprint"] = None
    else:  # a task with its own models, which differ
        res["tasks"]["stsb"]["models"] = {"baseline": {"spec": "x", "fingerprint": "1"},
                                          "candidate": {"spec": "y", "fingerprint": "2"}}
    assert mark_same_model(res, [(a, b)]) is False
    assert "same_as_baseline" not in res["models"]["candidate"]
    assert "The candidate is the baseline" not in render(res)


def test_a_pass_resting_on_too_few_examples_says_so_next_to_the_verdict():
    res = make_results(verdict="pass", reason="Every blocking rule holds (2 checks passed).")
    res["rules"] = [r for r in res["rules"] if r["status"] == "pass"]
    report = render(res)
    lines = report.splitlines()
    assert lines[3] == "Every blocking rule holds (2 checks passed)."
    assert lines[5:7] == ["> [!WARNING]", "> **This PASS rests on too few examples:** n = 113 cannot detect a 5% "
                          "change; about 170 examples needed (rule: target improves). A real effect of that size "
                          "could go unseen."]
    assert "**Sample size**" not in report  # said once, where it matters
    # a failing verdict keeps the warning in its section below the rules
    assert "This PASS rests" not in render(make_results()) and "**Sample size**" in render(make_results())


def test_a_long_local_candidate_path_is_named_by_its_folder_with_the_full_path_in_the_details():
    path = "/home/runner/work/app/.gate-cache/demo/candidate-28c234d8c6b915d1"
    res = make_results()
    res["models"]["candidate"]["spec"] = f"sentence-transformers:{path}"
    report = render(res)
    assert ("**Candidate** `sentence-transformers:…/candidate-28c234d8c6b915d1` vs **baseline** `st:base` "
            "(full paths under _Models and tasks_)") in report
    assert f"| candidate | `sentence-transformers:{path}` |" in report
    for short in ("sentence-transformers:./models/ft-v2", "sentence-transformers:BAAI/bge-small-en-v1.5@main",
                  "openai:ft:gpt-4o-mini-2024-07-18:acme::abc123"):
        res["models"]["candidate"]["spec"] = short
        assert f"**Candidate** `{short}` vs **baseline** `st:base`\n" in render(res)
