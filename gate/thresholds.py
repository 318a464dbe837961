"""Thresholds: rules that turn metrics into a verdict. The evaluation is a pure function.

Semantics (contracts §4), for each metric a rule selects:

- ``min`` / ``max``: the candidate's value is at least / at most the limit;
- ``min_delta``: the improvement in the metric's good direction (candidate - baseline,
  negated when lower is better) is at least the limit;
- ``max_drop``: the regression in the good direction (baseline - candidate, negated
  when lower is better) is at most the limit;
- ``max_ratio``: candidate / baseline is at most the limit;
- ``relative: true`` divides the improvement / regression by ``|baseline|``.

A comparison passes within a tolerance of 1e-9 so that, e.g., a relative change of
exactly 5 % computed in floating point is not a failure. A rule that selects no
metric, or meets a missing / NaN value or a zero baseline it must divide by, is an
``error`` — unless ``optional``, when it is ``skipped`` and said so in the report.
A failing ``severity: warn`` rule is ``warn`` and does not block.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

from gate.documents import load_document, validate

CONDITIONS = ("min", "max", "min_delta", "max_drop", "max_ratio")
TOLERANCE = 1e-9
_SYMBOL = {"min": "≥", "max": "≤", "min_delta": "≥", "max_drop": "≤", "max_ratio": "≤"}


@dataclass(frozen=True)
class Rule:
    condition: str
    limit: float
    metric: str | None = None
    group: str | None = None
    name: str = ""
    relative: bool = False
    severity: str = "block"
    optional: bool = False

    @property
    def title(self) -> str:
        if self.name:
            return self.name
        selector = " ".join(filter(None, [f"group {self.group}" if self.group else None, self.metric]))
        rel = " (relative)" if self.relative else ""
        return f"{selector}: {self.condition} {_fmt_limit(self)}{rel}"

    @cached_property
    def _pattern(self) -> re.Pattern | None:
        if self.metric is None:
            return None
        # Only * and ? are wildcards: metric ids contain brackets (pass_rate[adversarial]).
        body = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in self.metric)
        return re.compile(body + r"\Z")

    def selects(self, metric_id: str, group: str | None) -> bool:
        if self.group is not None and group != self.group:
            return False
        return self._pattern is None or bool(self._pattern.match(metric_id))


@dataclass(frozen=True)
class RuleResult:
    name: str
    metric: str | None
    status: str  # pass | fail | warn | error | skipped
    observed: float | None
    limit: float | None
    message: str
    condition: str
    severity: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _fmt_limit(rule: Rule) -> str:
    if rule.relative:
        return f"{rule.limit * 100:g}%"
    return f"{rule.limit:g}"


def rules_from_data(data: Mapping[str, Any]) -> list[Rule]:
    out = []
    for raw in data["rules"]:
        (condition,) = [c for c in CONDITIONS if c in raw]
        out.append(Rule(condition=condition, limit=float(raw[condition]), metric=raw.get("metric"),
                        group=raw.get("group"), name=raw.get("name", ""), relative=bool(raw.get("relative", False)),
                        severity=raw.get("severity", "block"), optional=bool(raw.get("optional", False))))
    return out


def load_thresholds(path: str | Path) -> list[Rule]:
    """Load and schema-check a thresholds file (bad input raises, exit 2)."""
    doc = load_document(path, "thresholds file")
    validate(doc, "thresholds")
    return rules_from_data(doc.data)


def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _pct(x: float) -> str:
    return f"{x * 100:+.2f}%"


def _check_one(rule: Rule, metric_id: str, m: Mapping[str, Any]) -> tuple[str, float | None, str]:
    """(status before severity, observed, message) for one selected metric."""
    cand, base = _num(m.get("candidate")), _num(m.get("baseline"))
    hib = bool(m.get("higher_is_better", True))
    if cand is None:
        return "error", None, f"{metric_id}: the candidate's value is missing or NaN"
    if rule.condition in ("min", "max"):
        observed = cand
        ok = cand >= rule.limit - TOLERANCE if rule.condition == "min" else cand <= rule.limit + TOLERANCE
        return ("pass" if ok else "fail"), observed, (
            f"{metric_id} = {cand:.4g}, required {_SYMBOL[rule.condition]} {rule.limit:g}")
    if base is None:
        return "error", None, f"{metric_id}: the baseline's value is missing or NaN"
    if rule.condition == "max_ratio":
        if base == 0:
            return "error", None, f"{metric_id}: the baseline is 0, so candidate / baseline is undefined"
        observed = cand / base
        ok = observed <= rule.limit + TOLERANCE
        return ("pass" if ok else "fail"), observed, (
            f"{metric_id}: candidate / baseline = {observed:.4g}, required ≤ {rule.limit:g}")
    improvement = (cand - base) if hib else (base - cand)
    if rule.relative:
        if base == 0 and improvement != 0:
            # From 0 any change is an unbounded relative change: better passes, worse fails, whatever the limit.
            ok = improvement > 0
            word = "improved" if ok else "worsened"
            return ("pass" if ok else "fail"), None, (
                f"{metric_id} {word} from a baseline of 0 to {cand:.4g}: an unbounded relative change")
        improvement = improvement / abs(base) if base else 0.0
    shown = _pct if rule.relative else (lambda x: f"{x:+.4g}")
    if rule.condition == "min_delta":
        ok = improvement >= rule.limit - TOLERANCE
        return ("pass" if ok else "fail"), improvement, (
            f"{metric_id} changed by {shown(improvement)} in its good direction, required ≥ {shown(rule.limit)}")
    drop = -improvement
    ok = drop <= rule.limit + TOLERANCE
    allowed = f"allowed drop ≤ {shown(rule.limit).lstrip('+')}"
    if drop > 0:
        return ("pass" if ok else "fail"), drop, f"{metric_id} dropped by {shown(drop).lstrip('+')}, {allowed}"
    return ("pass" if ok else "fail"), drop, f"{metric_id} did not drop (changed by {shown(improvement)}), {allowed}"


def evaluate(rules: list[Rule], metrics: Mapping[str, Mapping[str, Any]],
             groups: Mapping[str, str]) -> list[RuleResult]:
    """Apply every rule to every metric it selects. ``groups`` maps task name to group."""
    results: list[RuleResult] = []
    for rule in rules:
        selected = [mid for mid in metrics if rule.selects(mid, groups.get(mid.split("/", 1)[0]))]
        if not selected:
            status = "skipped" if rule.optional else "error"
            what = " and ".join(filter(None, [f"metric {rule.metric!r}" if rule.metric else None,
                                              f"group {rule.group!r}" if rule.group else None]))
            msg = f"no metric in the results matches {what}" + (" (optional rule)" if rule.optional else "")
            results.append(RuleResult(rule.title, rule.metric, status, None, rule.limit, msg, rule.condition,
                                      rule.severity))
            continue
        for mid in selected:
            status, observed, msg = _check_one(rule, mid, metrics[mid])
            if status == "error" and rule.optional:
                status, msg = "skipped", msg + " (optional rule)"
            elif status == "fail" and rule.severity == "warn":
                status = "warn"
            results.append(RuleResult(rule.title, mid, status, observed, rule.limit, msg, rule.condition,
                                      rule.severity))
    return results


def judge(rules: list[Rule], metrics: Mapping[str, Mapping[str, Any]], tasks: Mapping[str, Mapping[str, Any]],
          errors: list[str]) -> tuple[list[RuleResult], str, str]:
    """Rule results, verdict and reason for a run's metrics; ``tasks`` maps task name to its info (with group)."""
    groups = {name: info["group"] for name, info in tasks.items()}
    rule_results = evaluate(rules, metrics, groups)
    verdict, reason = decide(rule_results, errors, bool(rules))
    return rule_results, verdict, reason


def decide(rule_results: list[RuleResult], errors: list[str], rules_given: bool) -> tuple[str, str]:
    """The verdict and a one-sentence reason. Errors win over failures: neither is ever a pass."""
    failed = [r for r in rule_results if r.status == "fail"]
    erred = [r for r in rule_results if r.status == "error"]
    if errors:
        return "error", f"The evaluation could not be completed: {errors[0]}"
    if erred:
        more = f" (and {len(erred) - 1} more)" if len(erred) > 1 else ""
        return "error", f"Rule '{erred[0].name}' could not be checked: {erred[0].message}{more}."
    if failed:
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        return "fail", f"Rule '{failed[0].name}' failed: {failed[0].message}{more}."
    if not rules_given:
        return "pass", "No thresholds were given, so no rule was checked."
    passed = sum(r.status == "pass" for r in rule_results)
    if rule_results and passed == 0 and all(r.status == "skipped" for r in rule_results):
        # Nothing was checked: a pass here would wave through whatever the run measured.
        return "error", ("No rule applied: every rule is optional and none selects a metric of these results; "
                         "the thresholds file does not fit this suite.")
    warned = sum(r.status == "warn" for r in rule_results)
    skipped = sum(r.status == "skipped" for r in rule_results)
    extra = "".join([f"; {warned} warning(s)" if warned else "", f"; {skipped} optional check(s) skipped" if skipped else ""])
    return "pass", f"Every blocking rule holds ({passed} check(s) passed{extra})."
