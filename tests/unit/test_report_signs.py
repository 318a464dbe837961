"""The report's rule table can never show a sign that disagrees with its own detail (issue 16, item 5).

Every rule kind (min, max, min_delta, max_drop, max_ratio; relative and absolute; with and without
``significant``), on metrics where higher and where lower is better, with the candidate better and worse:
the rule results come from the real :func:`gate.thresholds.evaluate`, the report from the real template,
and the Observed cell, the CI, the detail and the metric's Sig. mark must all tell the same story.
"""

from __future__ import annotations

import itertools
import re

import pytest

from gate.report import render
from gate.thresholds import Rule, Thresholds, evaluate

MINUS = "\u2212"
LIMITS = {"min": 0.4, "max": 0.6, "min_delta": 0.01, "max_drop": 0.02, "max_ratio": 1.2}
DELTA = ("min_delta", "max_drop")


def cases():
    for condition in LIMITS:
        for relative, significant in itertools.product((False, True), repeat=2):
            if condition not in DELTA and (relative or significant):
                continue
            for hib, better in itertools.product((True, False), repeat=2):
                yield condition, relative, significant, hib, better


def results_for(condition, relative, significant, hib, better):
    baseline = 0.50
    step = 0.05 if better == hib else -0.05  # candidate - baseline
    candidate = baseline + step
    metric = {"baseline": baseline, "candidate": candidate, "delta": step, "higher_is_better": hib, "n": 500,
              "ci": [step - 0.01, step + 0.01], "p_value": 0.001, "se": 0.005, "test": "sign-flip"}
    rule = Rule(condition=condition, limit=LIMITS[condition], metric="t/m", name="the rule", relative=relative,
                significant=significant)
    checks = evaluate(Thresholds([rule], holm=True), {"t/m": metric}, {"t": "g"})
    return {
        "schema_version": 1, "suite": "signs", "verdict": "pass", "reason": "x", "gate_version": "0",
        "stats": {"confidence": 0.95, "resamples": 2000, "seed": 0, "alpha": 0.05, "holm": True},
        "models": {"baseline": {"spec": "st:a", "fingerprint": "a"}, "candidate": {"spec": "st:b", "fingerprint": "b"}},
        "tasks": {"t": {"type": "sts", "group": "g", "n": 500}},
        "metrics": {"t/m": metric}, "rules": [c.to_json() for c in checks], "errors": [],
    }


def split(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]


def cells(report: str, first: str) -> list[str]:
    (line,) = [ln for ln in report.splitlines() if ln.startswith("| ") and first in ln]
    return split(line)


def row(report: str, first: str) -> dict[str, str]:
    """The table row holding ``first``, by column header."""
    lines = report.splitlines()
    (i,) = [i for i, ln in enumerate(lines) if ln.startswith("| ") and first in ln]
    header = next(lines[j] for j in range(i, -1, -1) if lines[j + 1].startswith("|:-:|") or
                  lines[j + 1].startswith("|---|"))
    return dict(zip(split(header), split(lines[i])))


def number(text: str) -> float:
    """The number a cell starts with (a real minus sign read as one)."""
    return float(text.split(" ")[0].replace(MINUS, "-").replace("%", "").replace("×", "").replace("+", ""))


def detail_change(message: str) -> float:
    """The change in the good direction that a rule's detail states (its own words and signs)."""
    message = message.replace("\\", "")
    if m := re.search(r"dropped by ([\d.]+)(%?)", message):
        return -float(m.group(1))
    if m := re.search(r"did not drop \(changed by ([+\-][\d.e\-]+)(%?)\)", message):
        return float(m.group(1))
    m = re.search(r"changed by ([+\-][\d.e\-]+)(%?) in its good direction", message)
    assert m, message
    return float(m.group(1))


@pytest.mark.parametrize("condition, relative, significant, hib, better", list(cases()))
def test_observed_agrees_with_the_detail_and_the_mark(condition, relative, significant, hib, better):
    res = results_for(condition, relative, significant, hib, better)
    report = render(res)
    r = row(report, "| the rule |")
    observed, limit, ci, p, detail = r["Observed"], r["Limit"], r["95% CI"], r["p"], r["Detail"]
    mark = row(report, "| `t/m` | 0.5000")["Sig."]
    if condition in DELTA:
        m = re.fullmatch(r"([+" + MINUS + r"])([\d.]+)(%?) \((improved|dropped)\)", observed)
        assert m, observed
        sign, word = m.group(1), m.group(4)
        assert (sign == "+") == (word == "improved") == better, (observed, detail)
        stated = detail_change(detail)
        assert (stated > 0) == better, detail
        assert abs(abs(number(observed)) - abs(stated)) <= 0.01, (observed, detail)  # same size, rounded
        assert (m.group(3) == "%") == relative, observed  # relative rules in % of the baseline
        lo, hi = (number(x) for x in ci.strip("[]").split(", "))
        assert lo <= hi and ((lo + hi) / 2 > 0) == better, (ci, observed)  # the CI reads in the same direction
        assert limit.startswith("drop ≤ " if condition == "max_drop" else "≥ ")
    elif condition == "max_ratio":
        assert observed.endswith("×") and limit == "≤ 1.2×"
        assert abs(number(observed) - float(detail.split("= ")[1].split(",")[0])) < 1e-3
    else:
        assert "(" not in observed  # a value, no direction
        assert abs(number(observed) - float(detail.split("= ")[1].split(",")[0])) < 1e-3
    # the metric's own mark says the same direction
    assert ("▲" in mark) == better and ("▼" in mark) == (not better), mark
    # the rule's own p is the metric's; the adjusted one, where there is one, stands in its own labelled column
    assert p == "0.001"
    assert ("p (Holm)" in r) == significant and r.get("p (Holm)", "0.001") == "0.001"


def test_the_demo_rule_that_contradicted_itself():
    """Issue 16's example: recall improved by 0.0333 under a max_drop 0 rule read "−0.0333" beside
    "did not drop (changed by +0.03329)"."""
    metric = {"baseline": 0.4049, "candidate": 0.4382, "delta": 0.0333, "higher_is_better": True, "n": 113,
              "ci": [0.0072, 0.0592], "p_value": 0.011, "se": 0.013, "test": "sign-flip"}
    rule = Rule(condition="max_drop", limit=0.0, metric="cranfield/recall@10",
                name="target recall does not regress significantly", significant=True)
    res = results_for("max_drop", False, True, True, True)
    res["metrics"] = {"cranfield/recall@10": metric}
    res["tasks"] = {"cranfield": {"type": "retrieval", "group": "target", "n": 113}}
    res["rules"] = [c.to_json() for c in evaluate(Thresholds([rule], holm=True), res["metrics"],
                                                  {"cranfield": "target"})]
    r = row(render(res), "| target recall")
    assert [r["Observed"], r["Limit"], r["95% CI"], r["p"], r["p (Holm)"]] == \
        ["+0.0333 (improved)", "drop ≤ 0", "[+0.0072, +0.0592]", "0.011", "0.011"]
    assert "did not drop (changed by +0.0333)" in r["Detail"]


def test_a_significant_drop_within_its_rule_is_not_shown_as_a_blocking_one():
    """Issue 16, item 7: stsb/spearman significantly worse (−0.2 %) under a passing ≤ 5 % drop rule."""
    metric = {"baseline": 0.8203, "candidate": 0.8183, "delta": -0.0020, "higher_is_better": True, "n": 1379,
              "ci": [-0.0036, -0.0004], "p_value": 0.017, "se": 0.0008, "test": "sign-flip"}
    rule = Rule(condition="max_drop", limit=0.05, metric="stsb/spearman", name="no general regression beyond 5%",
                relative=True, significant=True)
    res = results_for("max_drop", True, True, True, False)
    res["metrics"] = {"stsb/spearman": metric}
    res["tasks"] = {"stsb": {"type": "sts", "group": "general", "n": 1379}}
    res["rules"] = [c.to_json() for c in evaluate(Thresholds([rule], holm=True), res["metrics"], {"stsb": "general"})]
    report = render(res)
    assert row(report, "| `stsb/spearman` | 0.8203")["Sig."] == "▼ significant, within the allowed 5% drop"
    r = row(report, "| no general regression")
    assert [r["Observed"], r["Limit"]] == ["−0.24% (dropped)", "drop ≤ 5%"]
    # a failing rule keeps the bold mark
    res["rules"][0]["status"] = "fail"
    assert row(render(res), "| `stsb/spearman` | 0.8203")["Sig."] == "**▼ worse**"
