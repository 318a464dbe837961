"""Render a results.json into the Markdown verdict with Jinja2.

The template receives the context built by :func:`context` (documented in the
README for custom templates). Every report carries the hidden sticky-comment
marker; a custom template that omits it gets it prepended, so a user's template
can never make the gate post a second comment.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jinja2

from gate.errors import BadInput
from gate.report import markdown

STATUS_ORDER = {"error": 0, "fail": 1, "warn": 2, "skipped": 3, "pass": 4}
ICONS = {"pass": "✅", "fail": "❌", "error": "⚠️", "warn": "🟡", "skipped": "⏭️"}


def marker(suite: str) -> str:
    """The hidden marker that identifies this suite's sticky comment."""
    safe = "".join(ch for ch in suite if ch.isalnum() or ch in " ._-")
    return f"<!-- gate-report suite=\"{safe}\" -->"


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _signed(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f}"


def _observed(rule: dict[str, Any]) -> str:
    value = rule.get("observed")
    if value is None:
        return "n/a"
    if rule.get("condition") in ("min_delta", "max_drop") and "%" in rule.get("message", ""):
        return f"{value * 100:+.2f}%"
    return f"{value:.4g}"


def _limit(rule: dict[str, Any]) -> str:
    value = rule.get("limit")
    if value is None:
        return "n/a"
    symbol = {"min": "≥", "max": "≤", "min_delta": "≥", "max_drop": "≤", "max_ratio": "≤"}.get(rule.get("condition"), "")
    if rule.get("condition") in ("min_delta", "max_drop") and "%" in rule.get("message", ""):
        return f"{symbol} {value * 100:g}%"
    return f"{symbol} {value:g}"


def context(results: dict[str, Any]) -> dict[str, Any]:
    """Everything a template needs, derived from results.json alone."""
    rules = sorted(results.get("rules", []), key=lambda r: STATUS_ORDER.get(r["status"], 9))
    groups: dict[str, list[dict[str, Any]]] = {}
    slices: list[dict[str, Any]] = []  # per-category metrics (name[category]): folded away, they are many
    tasks = results.get("tasks", {})
    for mid, m in results.get("metrics", {}).items():
        group = tasks.get(mid.split("/", 1)[0], {}).get("group", "default")
        delta = m.get("delta")
        better = None
        if delta is not None and delta != 0:
            better = (delta > 0) == m.get("higher_is_better", True)
        rel = None
        if delta is not None and m.get("baseline") not in (None, 0):
            rel = delta / abs(m["baseline"])
        row = {"id": mid, **m, "better": better, "relative": rel}
        if mid.endswith("]") and "[" in mid:
            slices.append(row)
        else:
            groups.setdefault(group, []).append(row)
    counts = {s: sum(r["status"] == s for r in rules) for s in STATUS_ORDER}
    return {
        "results": results,
        "suite": results["suite"],
        "verdict": results["verdict"],
        "reason": results.get("reason", ""),
        "icon": ICONS.get(results["verdict"], ""),
        "marker": marker(results["suite"]),
        "rules": rules,
        "rule_counts": counts,
        "metric_groups": groups,
        "metric_slices": slices,
        "models": results.get("models", {}),
        "tasks": tasks,
        "errors": results.get("errors", []),
    }


def environment(loader: jinja2.BaseLoader) -> jinja2.Environment:
    env = jinja2.Environment(loader=loader, autoescape=False, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(md=markdown.text, code=markdown.code, num=_num, signed=_signed, observed=_observed,
                       limit=_limit)
    env.globals.update(status_icon=lambda s: ICONS.get(s, s))
    return env


def render(results: dict[str, Any], template: str | Path | None = None) -> str:
    """The Markdown report; ``template`` is a user's Jinja2 file (default: the shipped one)."""
    if template is None:
        env = environment(jinja2.PackageLoader("gate.report", "templates"))
        tmpl = env.get_template("report.md.j2")
    else:
        path = Path(template)
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise BadInput(f"cannot read template: {exc.strerror}", path) from None
        env = environment(jinja2.DictLoader({path.name: source}))
        try:
            tmpl = env.get_template(path.name)
        except jinja2.TemplateSyntaxError as exc:
            raise BadInput(f"template syntax error: {exc.message}", path, str(exc.lineno)) from None
    ctx = context(results)
    try:
        out = tmpl.render(**ctx)
    except jinja2.TemplateError as exc:
        where = str(template) if template else "built-in template"
        lineno = getattr(exc, "lineno", None)
        raise BadInput(f"template error: {exc}", where, str(lineno) if lineno else None) from None
    if not out.startswith(ctx["marker"]):  # the sticky comment is found by the marker on its first line
        out = ctx["marker"] + "\n" + out
    return out
