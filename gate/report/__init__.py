"""Render a results.json (and its examples.jsonl) into the Markdown verdict with Jinja2.

The template receives the context built by :func:`context` (documented in docs/report.md for
custom templates). Every report carries the hidden sticky-comment marker; a custom template
that omits it gets it prepended, so a user's template can never make the gate post a second
comment.

Size: a GitHub comment holds 65,536 characters. :func:`render` renders, and while the report is
longer than its budget (:data:`REPORT_BUDGET`), renders again with tighter :class:`Limits`
(fewer example changes, shorter texts, fewer metric rows per group, fewer passing rules ...).
The heading, the reason and the rules that did not pass are kept; they are cut only when they
alone exceed the budget.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from dataclasses import dataclass, replace
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any, Iterable

import jinja2

from gate.errors import BadInput
from gate.report import markdown

STATUS_ORDER = {"error": 0, "fail": 1, "warn": 2, "skipped": 3, "pass": 4}
ICONS = {"pass": "✅", "fail": "❌", "error": "⚠️", "warn": "🟡", "skipped": "⏭️"}
ATTENTION = ("error", "fail", "warn")
REPORT_BUDGET = 60_000  # characters: GitHub's comment limit is 65,536; github.py's note needs room too
CHART_METRICS = 8
MINUS = "\u2212"
_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def marker(suite: str) -> str:
    """The hidden marker that identifies this suite's sticky comment."""
    safe = "".join(ch for ch in suite if ch.isalnum() or ch in " ._-")
    return f"<!-- gate-report suite=\"{safe}\" -->"


# --------------------------------------------------------------------------- number formatting


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy scalars too
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _signed(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f}"


def digits_for(*values: Any) -> int:
    """Decimals that show values of this magnitude in fixed point: 4 below 10, 2 below 1000, else 1;
    values under 0.001 get 3 significant digits (a cost of 0.0000235 must not read 0.0000)."""
    mags = [abs(v) for v in map(_finite, values) if v is not None and v != 0]
    if not mags:
        return 4
    top = max(mags)
    if top >= 1000:
        return 1
    if top >= 10:
        return 2
    if top >= 0.001:
        return 4
    return min(12, 2 - math.floor(math.log10(top)))


def fixed(value: Any, digits: int | None = None, sign: bool = False) -> str:
    """A number in fixed point (never exponent notation), with a real minus sign; ``n/a`` when missing.

    A value that is not 0 never reads as zero: where ``digits`` would round it to 0 (a CI bound of
    -0.00003), it gets the decimals that show its first two significant digits, and its sign (whether a
    bound is below or above 0 is what a reader looks for). Only an exact 0 reads ``0.0000``, unsigned."""
    x = _finite(value)
    if x is None:
        return "n/a"
    d = digits_for(x) if digits is None else digits
    if x != 0 and round(abs(x), d) == 0:
        d = min(12, max(d, 1 - math.floor(math.log10(abs(x)))))
    s = f"{x:+.{d}f}" if sign else f"{x:.{d}f}"
    if float(s.lstrip("+-") or 0) == 0:  # "-0.0000" is no change
        s = s.lstrip("+-")
    return s.replace("-", MINUS)


def plain(value: Any) -> str:
    """A limit as written (0.05, 5, 0.0000001): shortest form, fixed point."""
    x = _finite(value)
    if x is None:
        return "n/a"
    s = format(Decimal(repr(x)), "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s.replace("-", MINUS)


def pvalue(value: Any) -> str:
    """A p-value: ``<0.001`` or three decimals rounded down (0.0499 shows 0.049, not 0.050: a shown p agrees
    with "significant at p < 0.05"); ``n/a`` when missing."""
    p = _finite(value)
    if p is None:
        return "n/a"
    if p < 0.001:
        return "<0.001"
    return str(Decimal(repr(p)).quantize(Decimal("0.001"), rounding=ROUND_FLOOR))


def interval(ci: Any, digits: int | None = None, percent: bool = False, sign: bool = True) -> str:
    """A confidence interval as ``[−0.0120, +0.0040]`` (``percent``: ``[−1.20%, +0.40%]``)."""
    if not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return "n/a"
    lo, hi = map(_finite, ci)
    if lo is None or hi is None:
        return "n/a"
    if percent:
        return f"[{fixed(lo * 100, 2, sign=sign)}%, {fixed(hi * 100, 2, sign=sign)}%]"
    d = digits_for(lo, hi) if digits is None else digits
    return f"[{fixed(lo, d, sign=sign)}, {fixed(hi, d, sign=sign)}]"


def _is_relative(rule: dict[str, Any]) -> bool:
    if "relative" in rule:
        return bool(rule["relative"])
    return rule.get("condition") in ("min_delta", "max_drop") and "%" in (rule.get("message") or "")


DELTA_CONDITIONS = ("min_delta", "max_drop")


def change_of(rule: dict[str, Any]) -> float | None:
    """A delta rule's observed change in the metric's good direction (positive: better), whatever the rule
    states its limit on: ``min_delta`` observes the improvement, ``max_drop`` the drop (its negation)."""
    value = _finite(rule.get("observed"))
    if value is None or rule.get("condition") not in DELTA_CONDITIONS:
        return None
    return value if rule["condition"] == "min_delta" else -value


def direction_word(change: float) -> str:
    """``improved`` / ``dropped`` / ``unchanged``: the word the Observed column gives a change, matching the
    words of the rule's detail ("dropped by", "did not drop", "changed by ... in its good direction")."""
    return "improved" if change > 0 else "dropped" if change < 0 else "unchanged"


def _observed(rule: dict[str, Any]) -> str:
    """The Observed cell, in the rule's own direction and unit: a delta rule's change in the metric's good
    direction, signed and named (``+0.0333 (improved)``, ``−0.24% (dropped)``), never a bare negated drop;
    a ratio as ``1.2100×``; a value as it is."""
    value = _finite(rule.get("observed"))
    if value is None:
        return "n/a"
    change = change_of(rule)
    if change is not None:
        shown = f"{fixed(change * 100, 2, sign=True)}%" if _is_relative(rule) else fixed(change, sign=True)
        if shown.lstrip("+" + MINUS).rstrip("%").strip("0.") == "":
            return f"{shown.lstrip('+' + MINUS)} (unchanged)"
        return f"{shown} ({direction_word(change)})"
    if rule.get("condition") == "max_ratio":
        return f"{fixed(value)}×"
    return fixed(value)


def _limit(rule: dict[str, Any]) -> str:
    """The Limit cell: ``≥ +5%`` (a required improvement), ``drop ≤ 5%`` (an allowed drop), ``≤ 2×``,
    ``≥ 0.7``."""
    value = _finite(rule.get("limit"))
    if value is None:
        return "n/a"
    condition = rule.get("condition")
    shown = f"{plain(value * 100)}%" if _is_relative(rule) else plain(value)
    if condition == "min_delta":
        return f"≥ {'+' if value > 0 else ''}{shown}"
    if condition == "max_drop":
        return f"drop ≤ {shown}"
    if condition == "max_ratio":
        return f"≤ {shown}×"
    symbol = {"min": "≥", "max": "≤"}.get(condition, "")
    return f"{symbol} {shown}"


def _rule_ci(rule: dict[str, Any]) -> str:
    """The rule's CI in the units of its Observed cell (a ``max_drop`` CI turned from drop into change)."""
    ci = rule.get("ci")
    if not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return "n/a"
    if rule.get("condition") == "max_drop":
        lo, hi = map(_finite, ci)
        ci = [None if hi is None else -hi, None if lo is None else -lo]
    return interval(ci, percent=_is_relative(rule), sign=rule.get("condition") in DELTA_CONDITIONS)


def _inert(value: Any, known: Iterable[Any] = ()) -> Any:
    """A value the template prints without a filter (a count, a role, a status, the verdict): as it is when it
    is an integer or one of ``known``, else as neutralized text. results.json is checked against its schema
    when it is read, but ``gate merge`` renders the results it builds from shard files (artifacts a pull
    request controls) without that check, so these must not be trusted to be what the schema says."""
    if isinstance(value, int) and not isinstance(value, bool) or value in tuple(known):
        return value
    return markdown.text(value)


def mark(better: bool | None, significant: bool | None) -> str:
    """The significance column: **▲ better** / **▼ worse** (significant), △ n.s. / ▽ n.s. (not significant),
    △ / ▽ (no test), · (no change)."""
    if better is None:
        return "·"
    if significant is True:
        return "**▲ better**" if better else "**▼ worse**"
    if significant is False:
        return "△ n.s." if better else "▽ n.s."
    return "△" if better else "▽"


# --------------------------------------------------------------------------- examples.jsonl


def load_examples(path: str | Path) -> list[dict[str, Any]] | None:
    """The rows of an examples.jsonl, or None when there is no such file (bad lines are bad input)."""
    from gate.results import read_examples

    return [row for _, row in read_examples(path)] if Path(path).is_file() else None


def _score(role: Any, key: str) -> float | None:
    if not isinstance(role, dict):
        return None
    value = role.get(key)
    if isinstance(value, bool):
        value = float(value)
    return _finite(value)


def _changes(tasks: dict[str, Any], examples: Iterable[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Per task with an ``example_score``: every example whose score changed, worst first / best first."""
    if examples is None:
        return []
    scored: dict[str, dict[str, Any]] = {}
    for name, info in tasks.items():
        spec = info.get("example_score") if isinstance(info, dict) else None
        if isinstance(spec, dict) and isinstance(spec.get("key"), str):
            scored[name] = {"task": name, "key": spec["key"], "higher_is_better": bool(spec.get("higher_is_better", True)),
                            "type": info.get("type"),
                            "worse": [], "better": [], "counts": {"worse": 0, "better": 0, "same": 0, "unscored": 0}}
    if not scored:
        return []
    for order, row in enumerate(examples):
        if not isinstance(row, dict):
            continue
        t = scored.get(row.get("task")) if isinstance(row.get("task"), str) else None
        if t is None:
            continue
        b, c = _score(row.get("baseline"), t["key"]), _score(row.get("candidate"), t["key"])
        if b is None or c is None:
            t["counts"]["unscored"] += 1
            continue
        change = (c - b) if t["higher_is_better"] else (b - c)
        if change == 0:
            t["counts"]["same"] += 1
            continue
        text = row.get("text")
        ex = {"id": row.get("id"), "change": change, "baseline_value": b, "candidate_value": c, "order": order,
              "text": text if isinstance(text, dict) else ({} if text is None else {"text": text}),
              "baseline": row["baseline"], "candidate": row["candidate"]}
        t["worse" if change < 0 else "better"].append(ex)
        t["counts"]["worse" if change < 0 else "better"] += 1
    out = []
    for t in scored.values():
        if not any(t["counts"].values()):
            continue  # no row of this task at all: nothing to say
        t["worse"].sort(key=lambda e: (e["change"], e["order"]))
        t["better"].sort(key=lambda e: (-e["change"], e["order"]))
        out.append(t)
    return out


def _role_lines(role: Any, key: str, value: float | None, limit: int) -> list[str]:
    """What a model did on one example, as neutralized Markdown fragments (model output is untrusted)."""
    if not isinstance(role, dict):
        return ["_no output (the model failed)_"]
    parts = [f"{markdown.code(key, 40)} = {fixed(value)}"]
    if "cosine" in role and _finite(role.get("cosine")) is not None:
        parts.append(f"cosine {fixed(role['cosine'])}")
    if isinstance(role.get("outcome"), (str, int, float)) and not isinstance(role.get("outcome"), bool):
        parts.append(f"outcome {markdown.text(role['outcome'], 40)}")
    lines = [" · ".join(parts)]
    if isinstance(role.get("top"), list) and role["top"]:
        ids = ", ".join(markdown.code(d, 30) for d in role["top"][:5])
        lines.append(f"top: {ids}{' …' if len(role['top']) > 5 else ''}")
    calls = role.get("tool_calls")
    if isinstance(calls, list) and calls:
        shown = []
        for call in calls[:3]:
            if isinstance(call, dict):
                args = call.get("arguments")
                args = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False, sort_keys=True)
                shown.append(markdown.code(f"{call.get('name')}({args})", max(limit // 2, 40)))
        if shown:
            lines.append("tool calls: " + ", ".join(shown) + (" …" if len(calls) > 3 else ""))
    answer = role.get("answer")
    if isinstance(answer, str) and answer.strip():
        lines.append("answer: " + markdown.text(answer, limit))
    return lines


# --------------------------------------------------------------------------- limits


@dataclass(frozen=True)
class Limits:
    """How much of each section a report shows (None: all). :data:`LEVELS` tightens them step by step."""

    examples: int = 3              # biggest changes per direction per task
    text: int = 300                # characters of an example's text or answer
    metric_rows: int | None = None  # metric rows per group (rule-checked and largest changes kept)
    slices: int | None = None      # per-category rows
    passing_rules: int | None = None
    failing_rules: int | None = None
    tasks: int | None = None
    errors: int = 50
    warnings: int | None = None
    message: int = 200             # characters of a rule's message


LEVELS = (
    Limits(),
    Limits(examples=3, text=200, metric_rows=200, slices=200, passing_rules=200, warnings=50),
    Limits(examples=2, text=120, metric_rows=60, slices=50, passing_rules=50, tasks=50, warnings=20, errors=20),
    Limits(examples=1, text=80, metric_rows=25, slices=0, passing_rules=20, tasks=20, warnings=10, errors=10,
           message=150),
    Limits(examples=0, text=80, metric_rows=10, slices=0, passing_rules=0, tasks=10, warnings=5, errors=5,
           message=120),
    Limits(examples=0, text=80, metric_rows=0, slices=0, passing_rules=0, tasks=0, warnings=3, errors=3,
           message=80),
)


def _take(rows: list[Any], limit: int | None) -> tuple[list[Any], int]:
    if limit is None or len(rows) <= limit:
        return rows, 0
    return rows[:limit], len(rows) - limit


def _top_metrics(rows: list[dict[str, Any]], limit: int | None) -> tuple[list[dict[str, Any]], int]:
    """At most ``limit`` rows, in their order: the rule-checked ones first, then the significant, then the
    largest relative changes."""
    if limit is None or len(rows) <= limit:
        return rows, 0

    def weight(item: tuple[int, dict[str, Any]]) -> tuple:
        i, m = item
        size = abs(m["relative"]) if m["relative"] is not None else abs(_finite(m.get("delta")) or 0.0)
        return (not m["headline"], not m["significant"], _finite(m.get("p_value")) or 1.0, -size, i)

    keep = sorted(sorted(enumerate(rows), key=weight)[:limit])
    return [m for _, m in keep], len(rows) - limit


# --------------------------------------------------------------------------- context


def _alpha(results: dict[str, Any]) -> float:
    stats = results.get("stats") if isinstance(results.get("stats"), dict) else {}
    if _finite(stats.get("alpha")) is not None:
        return float(stats["alpha"])
    confidence = _finite(stats.get("confidence"))
    return round(1 - confidence, 10) if confidence is not None and 0 < confidence < 1 else 0.05


def _full(results: dict[str, Any], examples: Iterable[dict[str, Any]] | None) -> dict[str, Any]:
    """Everything derived from results.json and the examples, before any section is shortened."""
    alpha = _alpha(results)
    stats = results.get("stats") if isinstance(results.get("stats"), dict) else {}
    confidence = _finite(stats.get("confidence")) or 1 - alpha
    tasks = results.get("tasks", {})
    metrics = results.get("metrics", {})
    rules = sorted(results.get("rules", []), key=lambda r: STATUS_ORDER.get(r["status"], 9))
    headline_ids = [r["metric"] for r in rules if isinstance(r.get("metric"), str) and r["metric"] in metrics]

    notes: dict[str, int] = {}
    groups: dict[str, list[dict[str, Any]]] = {}
    slices: list[dict[str, Any]] = []  # per-category metrics (name[category]): folded away, they are many
    by_id: dict[str, dict[str, Any]] = {}
    for mid, m in metrics.items():
        group = tasks.get(mid.split("/", 1)[0], {}).get("group", "default")
        delta = _finite(m.get("delta"))
        better = None
        if delta is not None and delta != 0:
            better = (delta > 0) == m.get("higher_is_better", True)
        rel = None
        if delta is not None and _finite(m.get("baseline")) not in (None, 0):
            rel = delta / abs(m["baseline"])
        p = _finite(m.get("p_value"))
        significant = None if p is None else p < alpha
        note = m.get("stats_note")
        ref = ""
        if isinstance(note, str) and note and (m.get("ci") is None or m.get("p_value") is None):
            if note not in notes:
                notes[note] = len(notes) + 1
            ref = str(notes[note]).translate(_SUPERSCRIPT)
        d = digits_for(m.get("baseline"), m.get("candidate"))
        pct = f" ({fixed(rel * 100, 1, sign=True)}%)" if rel is not None and delta else ""
        cells = {"baseline": fixed(m.get("baseline"), d), "candidate": fixed(m.get("candidate"), d),
                 "delta": fixed(delta, d, sign=True) + pct,
                 "ci": (interval(m.get("ci"), d) if m.get("ci") else "n/a") + (ref if m.get("ci") is None else ""),
                 "p": pvalue(p) + (ref if p is None and m.get("ci") is not None else ""),
                 "mark": mark(better, significant) if delta is not None else "n/a"}
        row = {"id": mid, **m, "group": group, "better": better, "relative": rel, "significant": significant,
               "headline": mid in headline_ids, "note_ref": ref, "cells": cells}
        by_id[mid] = row
        if mid.endswith("]") and "[" in mid:
            slices.append(row)
        else:
            groups.setdefault(group, []).append(row)

    # Holm (thresholds "holm": true): the significance checks of blocking rules are one family, and each decides
    # on its adjusted p. The rule tables show it in a column of its own, "p (Holm)", beside the metric's own p
    # (the one the Metrics table shows), so the two numbers for one metric are never mistaken for each other.
    holm_on = stats.get("holm") is True
    holm_family = 0
    rule_rows = []
    for r in rules:
        m = by_id.get(r.get("metric") or "")
        p = _finite(r.get("p_value"))
        p_adj = _finite(r.get("p_adjusted"))
        in_family = (holm_on and r.get("significant") is not None and r.get("severity", "block") == "block"
                     and p_adj is not None) or (p_adj is not None and p is not None and abs(p_adj - p) > 1e-12)
        holm_family += in_family
        decided = p_adj if in_family else p
        sig = r.get("significant")
        if sig is None and decided is not None:
            sig = decided < alpha
        rule_rows.append({**r, "status": _inert(r["status"], STATUS_ORDER), "relative": _is_relative(r),
                          "metric_row": m, "significant": sig, "holm": in_family,
                          "mark": mark(m["better"], sig) if m is not None and m["delta"] is not None else "",
                          "cells": {"observed": _observed(r), "limit": _limit(r), "ci": _rule_ci(r), "p": pvalue(p),
                                    "p_holm": pvalue(p_adj) if in_family else "—"}})
    holm = holm_family > 0
    _unblocked_marks(by_id, rule_rows)

    chart = None
    shown_ids: list[str] = []
    for mid in headline_ids:
        row = by_id[mid]
        b, c = _finite(row.get("baseline")), _finite(row.get("candidate"))
        # scores and rates on a 0-1 scale only: a cost or a latency that happens to be below 1 is not a score
        if mid in shown_ids or b is None or c is None or not row.get("higher_is_better", True):
            continue
        if 0 <= b <= 1 and 0 <= c <= 1:
            shown_ids.append(mid)
    shown_ids = shown_ids[:CHART_METRICS]
    if shown_ids:
        labels = ", ".join(markdown.mermaid_label(mid) for mid in shown_ids)
        cand = ", ".join(f"{by_id[mid]['candidate']:.4f}" for mid in shown_ids)
        base = ", ".join(f"{by_id[mid]['baseline']:.4f}" for mid in shown_ids)
        # horizontal: metric ids are long, and a vertical category axis gives each its own line
        height = 120 + 48 * len(shown_ids)
        chart = {"metrics": shown_ids, "mermaid": "\n".join([
            '%%{init: {"xyChart": {"width": 720, "height": ' + str(height) + '}}}%%',
            "xychart-beta horizontal",
            '    title "Headline metrics: candidate (bars) vs baseline (line)"',
            f"    x-axis [{labels}]",
            '    y-axis "score" 0 --> 1',
            f"    bar [{cand}]",
            f"    line [{base}]"])}

    warnings = [{"rule": r["name"], "metric": r.get("metric"), "warning": r["warning"], "n": r.get("n"),
                 "examples_needed": r.get("examples_needed"), "mde": r.get("mde"),
                 # a PASS that a blocking rule cannot vouch for: said next to the verdict, not below the rules
                 "by_verdict": results.get("verdict") == "pass" and r.get("severity", "block") == "block"
                 and r["status"] == "pass"}
                for r in rule_rows if isinstance(r.get("warning"), str) and r["warning"]]
    seen: set[tuple] = set()
    warnings = [w for w in warnings if (w["metric"], w["warning"]) not in seen and not seen.add((w["metric"], w["warning"]))]

    return {
        "results": results,
        "suite": results["suite"],
        "verdict": _inert(results["verdict"], ICONS),
        "reason": results.get("reason", ""),
        "icon": ICONS.get(results["verdict"], ""),
        "marker": marker(results["suite"]),
        "rules": rule_rows,
        "rule_counts": {s: sum(r["status"] == s for r in rules) for s in STATUS_ORDER},
        "metric_groups": groups,
        "metric_slices": slices,
        "metrics": by_id,
        "models": {_inert(role, ("baseline", "candidate")): m for role, m in results.get("models", {}).items()},
        "tasks": tasks,
        "errors": results.get("errors", []),
        "stats": {key: _inert(v) if key == "resamples" else v for key, v in stats.items()},
        "alpha": alpha,
        "confidence": confidence,
        "ci_label": f"{plain(confidence * 100)}% CI",
        "holm": holm,
        "holm_checks": holm_family,
        "same_model": _same_model(results.get("models")),
        "short_spec": {role: short_spec(m.get("spec")) for role, m in results.get("models", {}).items()
                       if isinstance(m, dict)},
        "notes": [{"ref": str(i).translate(_SUPERSCRIPT), "text": t} for t, i in notes.items()],
        "sample_warnings": warnings,
        "chart": chart,
        "changes": _changes(tasks, examples),
        "has_examples": examples is not None,
        # what the run was judged with (gate.trust) and, for `gate comment`, where the numbers came from
        "trust": results.get("trust"),
        "provenance": results.get("provenance"),
        "run_url": _run_url(results.get("run_url")),
    }


def _unblocked_marks(by_id: dict[str, dict[str, Any]], rule_rows: list[dict[str, Any]]) -> None:
    """A significant change that no rule blocks reads as such in the Metrics table: "▼ significant, within the
    allowed 5% drop" beside a passing rule, never a bold "▼ worse" that looks like the reason for a verdict."""
    for mid, row in by_id.items():
        if not row["significant"] or row["better"] is not False:
            continue
        ruled = [r for r in rule_rows if r.get("metric") == mid]
        if not ruled or any(r["status"] in ("fail", "error") for r in ruled):
            continue  # no rule on it (the plain mark), or a rule that it fails: bold, as before
        drop = next((r for r in ruled if r.get("condition") == "max_drop" and r["status"] == "pass"
                     and r.get("severity", "block") == "block"), None)
        if drop is not None:
            row["cells"]["mark"] = f"▼ significant, within the allowed {_limit(drop).removeprefix('drop ≤ ')} drop"
        else:
            row["cells"]["mark"] = "▼ significant, no rule blocks it"


def _same_model(models: Any) -> dict[str, Any] | None:
    """The candidate's record when it is the baseline itself (same fingerprint and options; see
    :func:`gate.results.mark_same_model`), else None."""
    if not isinstance(models, dict) or not isinstance(models.get("candidate"), dict):
        return None
    return models["candidate"] if models["candidate"].get("same_as_baseline") is True else None


def short_spec(spec: Any) -> str:
    """A model spec as the report's first lines name it: a long local path cut to its folder's name
    (``sentence-transformers:…/candidate-28c234d8c6b915d1``); the whole spec is in the Models table."""
    from gate.hub import parse_hub_ref

    if not isinstance(spec, str):
        return ""
    provider, sep, model = spec.partition(":")
    path = model.rstrip("/\\")
    if not sep or provider == "openai" or len(path) <= 32 or not _SEPARATOR.search(path) or parse_hub_ref(path):
        return spec
    return f"{provider}:…/{_SEPARATOR.split(path)[-1]}"


_SEPARATOR = re.compile(r"[/\\]")


#: how an example is named in "Biggest changes", by task type: the kind of thing its id is
EXAMPLE_LABELS = {"sts": "line", "classification": "line", "clustering": "line", "pairs": "line",
                  "retrieval": "query", "generation": "case", "pairwise": "case", "perplexity": "text"}


def example_label(task_type: Any, example_id: Any) -> str:
    """An example's id with what it is: ``line 325`` (of the data file), ``query 93``, ``case refund-3``;
    a holdout's ``train:12`` becomes ``train line 12``."""
    ex = str(example_id)
    if task_type == "holdout" and ":" in ex:
        split, _, rest = ex.partition(":")
        return f"{split} line {rest}"
    label = EXAMPLE_LABELS.get(task_type if isinstance(task_type, str) else "", "example")
    return f"{label} {ex}"


_RUN_URL = re.compile(r"https://[A-Za-z0-9.-]+(:\d+)?/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/actions/runs/\d+(/attempts/\d+)?")


def _run_url(value: Any) -> str | None:
    """The workflow run's page, only when it has exactly that shape: results.json may be forged, and a link
    is the one piece of the report that is not neutralized text."""
    return value if isinstance(value, str) and _RUN_URL.fullmatch(value) else None


def _limited(full: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """The context a template sees: ``full`` with each section cut to ``limits``; ``hidden`` counts the cuts."""
    ctx = dict(full)
    hidden: dict[str, Any] = {"groups": {}}
    attention = [r for r in full["rules"] if r["status"] in ATTENTION]
    passing = [r for r in full["rules"] if r["status"] not in ATTENTION]
    ctx["rules_attention"], hidden["failing_rules"] = _take(attention, limits.failing_rules)
    ctx["rules_passing"], hidden["passing_rules"] = _take(passing, limits.passing_rules)
    groups = {}
    for g, rows in full["metric_groups"].items():
        groups[g], hidden["groups"][g] = _top_metrics(rows, limits.metric_rows)
    ctx["metric_groups"] = groups
    ctx["metric_slices"], hidden["slices"] = _top_metrics(full["metric_slices"], limits.slices)
    ctx["errors"], hidden["errors"] = _take(full["errors"], limits.errors)
    ctx["sample_warnings"], hidden["warnings"] = _take(full["sample_warnings"], limits.warnings)
    tasks = list(full["tasks"].items())
    shown_tasks, hidden["tasks"] = _take(tasks, limits.tasks)
    ctx["task_rows"] = {name: {**t, "n": _inert(t["n"])} if isinstance(t, dict) and "n" in t else t
                        for name, t in shown_tasks}
    changes, hidden["changes"] = [], 0
    for t in full["changes"]:
        worse, w_cut = _take(t["worse"], limits.examples)
        better, b_cut = _take(t["better"], limits.examples)
        hidden["changes"] += w_cut + b_cut
        changes.append({**t, "worse": [_example_view(e, t, limits) for e in worse],
                        "better": [_example_view(e, t, limits) for e in better]})
    ctx["changes"] = changes
    ctx["limits"] = limits
    ctx["hidden"] = hidden
    ctx["shortened"] = limits != LEVELS[0]
    ctx["budget"] = None
    return ctx


def _example_view(ex: dict[str, Any], task: dict[str, Any], limits: Limits) -> dict[str, Any]:
    key = task["key"]
    d = digits_for(ex["baseline_value"], ex["candidate_value"])
    summary = (f"{'▲' if ex['change'] > 0 else '▼'} {fixed(ex['change'], d, sign=True)} · "
               f"{markdown.html_text(example_label(task.get('type'), ex['id']), 66)} · {markdown.html_text(key, 30)} "
               f"{fixed(ex['baseline_value'], d)} → {fixed(ex['candidate_value'], d)}")
    fields = [f"**{markdown.text(name, 40)}**: {markdown.text(value, limits.text)}"
              for name, value in list(ex["text"].items())[:4]]
    return {**ex, "summary": summary, "fields": fields,
            "baseline_lines": _role_lines(ex["baseline"], key, ex["baseline_value"], limits.text),
            "candidate_lines": _role_lines(ex["candidate"], key, ex["candidate_value"], limits.text)}


def context(results: dict[str, Any], examples: Iterable[dict[str, Any]] | None = None,
            limits: Limits | None = None) -> dict[str, Any]:
    """Everything a template needs, derived from results.json (and examples.jsonl's rows, when given)."""
    return _limited(_full(results, examples), limits or LEVELS[0])


# --------------------------------------------------------------------------- rendering


def environment(loader: jinja2.BaseLoader) -> jinja2.Environment:
    env = jinja2.Environment(loader=loader, autoescape=False, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(md=markdown.text, code=markdown.code, html=markdown.html_text, num=_num, signed=_signed,
                       observed=_observed, limit=_limit, fixed=fixed, pvalue=pvalue, interval=interval, plain=plain)
    env.globals.update(status_icon=lambda s: ICONS.get(s, s), mark=mark)
    return env


def _template(template: str | Path | None) -> jinja2.Template:
    if template is None:
        return environment(jinja2.PackageLoader("gate.report", "templates")).get_template("report.md.j2")
    path = Path(template)
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot read template: {exc.strerror}", path) from None
    except UnicodeDecodeError:
        raise BadInput("cannot read template: not UTF-8 text", path) from None
    env = environment(jinja2.DictLoader({path.name: source}))
    try:
        return env.get_template(path.name)
    except jinja2.TemplateSyntaxError as exc:
        raise BadInput(f"template syntax error: {exc.message}", path, str(exc.lineno)) from None


def _render_one(tmpl: jinja2.Template, ctx: dict[str, Any], template: str | Path | None) -> str:
    try:
        out = tmpl.render(**ctx)
    except jinja2.TemplateError as exc:
        where = str(template) if template else "built-in template"
        lineno = getattr(exc, "lineno", None)
        raise BadInput(f"template error: {exc}", where, str(lineno) if lineno else None) from None
    if not out.startswith(ctx["marker"]):  # the sticky comment is found by the marker on its first line
        out = ctx["marker"] + "\n" + out
    return out


def render(results: dict[str, Any], template: str | Path | None = None,
           examples: Iterable[dict[str, Any]] | None = None, *, budget: int | None = REPORT_BUDGET) -> str:
    """The Markdown report; ``template`` is a user's Jinja2 file (default: the shipped one); ``examples`` are
    examples.jsonl's rows (for "biggest changes"). The report is shortened step by step until it fits
    ``budget`` characters (None: never shortened)."""
    tmpl = _template(template)
    full = _full(results, examples)
    out = ""
    for limits in LEVELS if budget is not None else LEVELS[:1]:
        ctx = _limited(full, limits)
        ctx["budget"] = budget
        out = _render_one(tmpl, ctx, template)
        if budget is None or len(out) <= budget:
            return out
    # Only the rules that did not pass are left to cut: keep as many as fit (at least one), say how many more.
    def attempt(keep: int) -> str:
        ctx = _limited(full, replace(LEVELS[-1], failing_rules=keep))
        ctx["budget"] = budget
        return _render_one(tmpl, ctx, template)

    attention = sum(r["status"] in ATTENTION for r in full["rules"])
    lo, hi = 1, attention - 1
    fits = None
    while lo <= hi:  # the largest number of rows that fits
        keep = (lo + hi) // 2
        tried = attempt(keep)
        if len(tried) <= budget:
            fits, lo = tried, keep + 1
        else:
            hi = keep - 1
    if fits is not None:
        return fits
    return attempt(1) if attention > 1 else out
