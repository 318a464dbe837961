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

Statistics (issue 6). Every delta rule (``min_delta``, ``max_drop``) also reports the
metric's CI in the rule's own units (good direction; relative rules divide by
``|baseline|``), its p-value, and the minimum detectable effect
``MDE = (z(1 - alpha/2) + z(power)) * se`` with the number of examples that would bring
the MDE down to the rule's limit, ``n * (MDE / limit)**2``; when the MDE exceeds the limit
the rule carries a sample-size ``warning``. With ``"significant": true``:

- ``min_delta`` passes only when the improvement is at least the limit, the CI's lower
  bound is at least the limit, and (for a limit >= 0) p < alpha: an improvement must be
  demonstrated, not merely observed;
- ``max_drop`` fails only when the drop exceeds the limit *and* p < alpha; a drop beyond
  the limit that is not significant is ``warn`` (reported, not blocking).

A significance rule whose metric has no p-value (or, for ``min_delta``, no CI) is an ``error``
(``skipped`` when optional): a decision that needs evidence is never taken without it. So is one
on so few examples that no outcome could be significant (2 / 2**n >= alpha: n <= 5 at 0.05). A
``max_drop`` rule whose drop stays within the limit passes without evidence.
``"holm": true`` replaces the p-values of the significance checks of blocking rules by
Holm-adjusted ones (one family: every such rule x metric), so checking many metrics does
not inflate the chance of a false block or a false ship.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping, Sequence

from gate.documents import Document, load_document, validate

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
    #: decide on statistical evidence (see the module docstring)
    significant: bool = False

    @property
    def title(self) -> str:
        if self.name:
            return self.name
        selector = " ".join(filter(None, [f"group {self.group}" if self.group else None, self.metric]))
        rel = " (relative)" if self.relative else ""
        return f"{selector}: {self.condition} {_fmt_limit(self)}{rel}"

    @cached_property
    def _glob(self) -> list[tuple[re.Pattern, int]] | None:
        """The metric selector cut at each ``*`` into parts of fixed length, each a regex without quantifiers.

        Only * and ? are wildcards: metric ids contain brackets (pass_rate[adversarial]). Not one regex with
        ``.*`` per star: the selector comes from a pull request, and ``*a*a*a*...b`` backtracks
        exponentially on Python's re; :func:`_glob_match` needs no backtracking at all."""
        if self.metric is None:
            return None
        return [(re.compile("".join("." if ch == "?" else re.escape(ch) for ch in part)), len(part))
                for part in self.metric.split("*")]

    def selects(self, metric_id: str, group: str | None) -> bool:
        if self.group is not None and group != self.group:
            return False
        return self._glob is None or _glob_match(self._glob, metric_id)


def _glob_match(parts: list[tuple[re.Pattern, int]], text: str) -> bool:
    """Whether ``text`` matches a glob cut at its stars into ``parts``, in O(len(text) * len(glob)) time.

    The first part must match at the start, the last at the end, and each part between them is placed at
    its earliest match after the previous one: every part has a fixed length, so the earliest place leaves
    the most room for the others, and no other placement needs to be tried."""
    (first, first_len), *rest = parts
    if not rest:
        return first.fullmatch(text) is not None
    if first.match(text) is None:
        return False
    pos = first_len
    *middle, (last, last_len) = rest
    for part, length in middle:
        found = part.search(text, pos)
        if found is None:
            return False
        pos = found.start() + length
    start = len(text) - last_len
    return start >= pos and last.fullmatch(text, start) is not None


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
    significant: bool | None = None
    ci: tuple[float, float] | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    mde: float | None = None
    examples_needed: int | None = None
    n: int | None = None
    warning: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        if self.ci is not None:
            out["ci"] = list(self.ci)
        return out


DEFAULT_ALPHA = 0.05
DEFAULT_POWER = 0.8


@dataclass(frozen=True)
class Thresholds:
    """A thresholds file: its rules and the statistical settings they are checked with."""

    rules: list[Rule] = field(default_factory=list)
    alpha: float = DEFAULT_ALPHA
    power: float = DEFAULT_POWER
    holm: bool = False
    #: the file the rules were read from (rule i is ``/rules/i``), so a problem found later is located in it
    source: Document | None = field(default=None, compare=False, repr=False)

    def settings(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "power": self.power, "holm": self.holm}


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
                        severity=raw.get("severity", "block"), optional=bool(raw.get("optional", False)),
                        significant=bool(raw.get("significant", False))))
    return out


def thresholds_from_data(data: Mapping[str, Any], source: Document | None = None) -> Thresholds:
    return Thresholds(rules_from_data(data), alpha=float(data.get("alpha", DEFAULT_ALPHA)),
                      power=float(data.get("power", DEFAULT_POWER)), holm=bool(data.get("holm", False)),
                      source=source)


def load_thresholds(path: str | Path) -> Thresholds:
    """Load and schema-check a thresholds file (bad input raises, exit 2)."""
    doc = load_document(path, "thresholds file")
    validate(doc, "thresholds")
    return thresholds_from_data(doc.data, doc)


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


def plural(count: int, noun: str) -> str:
    """``1 check``, ``4 checks``: a count and its noun, in the right number."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _as_thresholds(rules: "Thresholds | Sequence[Rule]") -> Thresholds:
    return rules if isinstance(rules, Thresholds) else Thresholds(list(rules))


def evaluate(rules: "Thresholds | Sequence[Rule]", metrics: Mapping[str, Mapping[str, Any]],
             groups: Mapping[str, str]) -> list[RuleResult]:
    """Apply every rule to every metric it selects. ``groups`` maps task name to group."""
    th = _as_thresholds(rules)
    checks: list[RuleResult] = []
    rules_of: list[Rule] = []  # the rule of each check
    for rule in th.rules:
        selected = [mid for mid in metrics if rule.selects(mid, groups.get(mid.split("/", 1)[0]))]
        if not selected:
            status = "skipped" if rule.optional else "error"
            what = " and ".join(filter(None, [f"metric {rule.metric!r}" if rule.metric else None,
                                              f"group {rule.group!r}" if rule.group else None]))
            msg = f"no metric in the results matches {what}" + (" (optional rule)" if rule.optional else "")
            checks.append(RuleResult(rule.title, rule.metric, status, None, rule.limit, msg, rule.condition,
                                     rule.severity))
            rules_of.append(rule)
            continue
        for mid in selected:
            status, observed, msg = _check_one(rule, mid, metrics[mid])
            checks.append(_with_stats(RuleResult(rule.title, mid, status, observed, rule.limit, msg, rule.condition,
                                                 rule.severity), rule, metrics[mid], th))
            rules_of.append(rule)
    adjusted = _holm_adjusted(checks, rules_of) if th.holm else {}
    out = []
    for i, (rule, check) in enumerate(zip(rules_of, checks)):
        if rule.significant and check.metric in metrics and check.status != "error":
            check = _significance(rule, check, metrics[check.metric], th, adjusted.get(i, check.p_value),
                                  holm=i in adjusted)
        if check.status == "error" and rule.optional:
            check = replace(check, status="skipped", message=check.message + " (optional rule)")
        elif check.status == "fail" and rule.severity == "warn":
            check = replace(check, status="warn")
        out.append(check)
    return out


def _units(rule: Rule, m: Mapping[str, Any]) -> tuple[float, float] | None:
    """(sign, scale) turning a raw delta into the rule's ``observed`` units, or None when undefined."""
    base = _num(m.get("baseline"))
    sign = 1.0 if m.get("higher_is_better", True) else -1.0
    if rule.condition == "max_drop":
        sign = -sign
    if rule.relative:
        if base is None or base == 0:
            return None
        return sign, 1.0 / abs(base)
    return sign, 1.0


def _z(alpha: float, power: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(1.0 - alpha / 2.0) + NormalDist().inv_cdf(power)


def _limit_text(rule: Rule) -> str:
    return f"{rule.limit * 100:g}%" if rule.relative else f"{rule.limit:g}"


def _with_stats(check: RuleResult, rule: Rule, m: Mapping[str, Any], th: Thresholds) -> RuleResult:
    """The metric's CI (in the rule's units), p-value, MDE, examples needed and sample-size warning."""
    p = _num(m.get("p_value"))
    n = m.get("n") if isinstance(m.get("n"), int) else None
    extra: dict[str, Any] = {"p_value": p, "p_adjusted": p, "n": n}
    units = _units(rule, m) if rule.condition in ("min_delta", "max_drop") else None
    ci = m.get("ci")
    if units is not None and isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci:
        sign, scale = units
        lo, hi = sorted((sign * ci[0] * scale, sign * ci[1] * scale))
        extra["ci"] = (lo, hi)
    elif (rule.relative and rule.condition in ("min_delta", "max_drop") and _num(m.get("baseline")) == 0
          and isinstance(ci, (list, tuple)) and list(ci) == [0.0, 0.0]):
        extra["ci"] = (0.0, 0.0)  # no resample moved away from a baseline of 0: no relative change either
    se = _num(m.get("se"))
    if units is not None and se is not None and se > 0 and n:  # se 0: every difference equal, no variance to use
        mde = _z(th.alpha, th.power) * se * units[1]
        extra["mde"] = mde
        if rule.limit > 0:
            needed = math.ceil(n * (mde / rule.limit) ** 2 * (1 - 1e-12))
            extra["examples_needed"] = max(needed, 2)
            if mde > rule.limit + TOLERANCE:
                kind = "drop" if rule.condition == "max_drop" else "improvement"
                smallest = f"{mde * 100:.2f}%" if rule.relative else f"{mde:.4g}"
                extra["warning"] = (f"n = {n} cannot detect a {_limit_text(rule)} {kind} of {check.metric} "
                                    f"(the smallest detectable at alpha {th.alpha:g} and {th.power:.0%} power is "
                                    f"{smallest}); about {extra['examples_needed']:,} examples needed")
    return replace(check, **extra)


def _holm_adjusted(checks: list[RuleResult], rules_of: list[Rule]) -> dict[int, float]:
    """Holm-Bonferroni adjusted p-values of the significance checks of blocking rules, by check index."""
    family = [(i, c.p_value) for i, (r, c) in enumerate(zip(rules_of, checks))
              if r.significant and r.severity == "block" and c.p_value is not None]
    family.sort(key=lambda item: item[1])
    m = len(family)
    adjusted: dict[int, float] = {}
    running = 0.0
    for rank, (i, p) in enumerate(family):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def _fmt_p(p: float) -> str:
    """Rounded down (as the report's p column is), so a shown 0.049 agrees with "significant at 0.05"."""
    return "p < 0.001" if p < 0.001 else f"p = {math.floor(p * 1000) / 1000:.3f}"


def _min_exact_p(n: int) -> float:
    """The smallest two-sided p-value any paired test can give on ``n`` examples: 2 / 2**n (one sign pattern
    and its mirror image out of 2**n)."""
    return min(1.0, 2.0 / 2.0 ** n) if n < 1024 else 0.0


def _significance(rule: Rule, check: RuleResult, m: Mapping[str, Any], th: Thresholds,
                  p: float | None, holm: bool = False) -> RuleResult:
    """Apply the ``significant`` semantics to a check whose plain comparison is already done."""
    check = replace(check, p_adjusted=p)
    note = m.get("stats_note") or "the results hold no statistics for this metric"
    if rule.condition == "max_drop" and check.status == "pass":
        if p is None:
            return check  # within the limit: no evidence is needed to pass
    elif p is None:
        return replace(check, status="error", message=f"{check.message}; significance cannot be checked: {note}")
    elif check.n is not None and _min_exact_p(check.n) >= th.alpha:
        # no outcome on so few examples could be significant: the rule would be blind, not reassuring
        return replace(check, status="error", message=(
            f"{check.message}; n = {check.n} is too few to decide on significance: no paired test on "
            f"{check.n} examples can give p < {th.alpha:g} (the smallest possible is {_min_exact_p(check.n):.3g})"))
    if p is None:
        return check
    significant = p < th.alpha
    p_text = _fmt_p(p) + (" (Holm-adjusted)" if holm else "")
    check = replace(check, significant=significant)
    if rule.condition == "max_drop":
        if check.status == "pass":
            return replace(check, message=f"{check.message}; {p_text}")
        if significant:
            return replace(check, status="fail",
                           message=f"{check.message}; the drop is significant ({p_text} < alpha {th.alpha:g})")
        return replace(check, status="warn",
                       message=f"{check.message}, but not significantly ({p_text} >= alpha {th.alpha:g}): not blocking")
    # min_delta: the improvement must be demonstrated
    if check.status == "fail":
        return replace(check, message=f"{check.message}; {p_text}")
    # from a baseline of 0 a change has no relative size (observed is None): the p-value alone decides
    unbounded = rule.relative and _num(m.get("baseline")) == 0 and check.observed is None
    if not significant and (rule.limit >= 0 or unbounded):
        return replace(check, status="fail", message=f"{check.message}, but the improvement is not demonstrated: "
                                                     f"not significant at alpha {th.alpha:g} ({p_text})")
    if unbounded:
        return replace(check, message=f"{check.message}; demonstrated, {p_text}")
    if check.ci is None:
        return replace(check, status="error", message=f"{check.message}; the CI needed to check the size of the "
                                                      f"improvement is unavailable: {note}")
    shown = (lambda x: f"{x * 100:+.2f}%") if rule.relative else (lambda x: f"{x:+.4g}")
    if check.ci[0] < rule.limit - TOLERANCE:
        return replace(check, status="fail", message=f"{check.message}, but the improvement is not demonstrated: "
                                                     f"the CI lower bound {shown(check.ci[0])} is below the "
                                                     f"required {shown(rule.limit)}")
    return replace(check, message=f"{check.message}; demonstrated, CI lower bound {shown(check.ci[0])}, {p_text}")


def judge(rules: "Thresholds | Sequence[Rule]", metrics: Mapping[str, Mapping[str, Any]],
          tasks: Mapping[str, Mapping[str, Any]], errors: list[str]) -> tuple[list[RuleResult], str, str]:
    """Rule results, verdict and reason for a run's metrics; ``tasks`` maps task name to its info (with group)."""
    th = _as_thresholds(rules)
    groups = {name: info["group"] for name, info in tasks.items()}
    rule_results = evaluate(th, metrics, groups)
    verdict, reason = decide(rule_results, errors, bool(th.rules))
    return rule_results, verdict, reason


def reapply(results: dict[str, Any], path: str | Path) -> None:
    """Re-judge a results.json's metrics with the thresholds file at ``path`` (``gate check``, ``gate human
    import``): verdict, reason, rules, the file's sha256 and its statistical settings are replaced."""
    from gate.documents import file_sha256

    loaded = load_thresholds(path)
    rule_results, verdict, reason = judge(loaded, results["metrics"], results["tasks"], results.get("errors", []))
    results.update(verdict=verdict, reason=reason, rules=[r.to_json() for r in rule_results],
                   thresholds=file_sha256(path))
    results["stats"] = {**results.get("stats", {}), **loaded.settings()}


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
    extra = "".join([f"; {plural(warned, 'warning')}" if warned else "",
                     f"; {plural(skipped, 'optional check')} skipped" if skipped else ""])
    return "pass", f"Every blocking rule holds ({plural(passed, 'check')} passed{extra})."
