"""The metric catalogue: which metric ids a suite will produce, known before any model loads, and the check
of every rule's selector against it.

A rule whose metric or group matches nothing is an ``error`` at the end of a run (contracts §4): minutes of
encoding spent to learn that ``*/ndgc@10`` is a typo. So ``gate validate SUITE THRESHOLDS`` and ``gate run``
check each rule against the catalogue first and stop with exit 2, the rule's ``file:line:column`` and a
did-you-mean. An ``optional`` rule may select nothing (a shared checklist names metrics of other suites)
and is not checked.

Two catalogues, one check:

- :func:`of_suite`, from the suite alone: each task type declares its metrics from its fields
  (``metric_names`` of :func:`gate.tasks.task_types`: retrieval's ``k``, a generation task's ``scorers``,
  a pairwise task's ``reference``). Per-category slices (``pass_rate[adversarial]``) depend on the
  categories in the data, so here a selector that could be such a slice is let through;
- :func:`of_tasks`, from the loaded tasks (their data read): every id exactly, slices included.

:func:`check_rules` raises :class:`~gate.errors.BadInputs` listing every rule that selects nothing.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from gate.errors import BadInput, BadInputs
from gate.thresholds import Rule, Thresholds

#: the task ``gate human import`` adds to results; no suite declares it
HUMAN_TASK = "human"
#: a stand-in category for a slice whose categories are read from the data (matched by a selector's wildcards)
_ANY_CATEGORY = "a"
_LISTED = 12  # names listed in a message before "..."


@dataclass(frozen=True)
class TaskMetrics:
    """The metrics one task will report."""

    name: str
    type: str
    group: str
    #: metric names (without the ``task/`` prefix), slices included when ``exact``
    names: tuple[str, ...]
    #: names also reported per category (``name[category]``) when the data has categories
    sliced: tuple[str, ...] = ()
    #: True when the data was read: ``names`` is every metric, per-category slices included
    exact: bool = True

    def ids(self) -> list[str]:
        return [f"{self.name}/{m}" for m in self.names]


@dataclass(frozen=True)
class Catalogue:
    """Every metric a suite will produce, by task."""

    suite: str
    tasks: tuple[TaskMetrics, ...]

    def ids(self) -> list[str]:
        return [mid for t in self.tasks for mid in t.ids()]

    def groups(self) -> list[str]:
        return list(dict.fromkeys(t.group for t in self.tasks))

    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def task(self, name: str) -> TaskMetrics:
        return next(t for t in self.tasks if t.name == name)

    def group_of(self, metric_id: str) -> str | None:
        task = metric_id.split("/", 1)[0]
        return next((t.group for t in self.tasks if t.name == task), None)

    def matches(self, rule: Rule) -> list[str]:
        """The ids ``rule`` selects, with a stand-in id for each slice it could select once categories are known."""
        found = [mid for mid in self.ids() if rule.selects(mid, self.group_of(mid))]
        if rule.metric is None:
            return found
        for t in self.tasks:
            if t.exact or (rule.group is not None and rule.group != t.group):
                continue
            found += [f"{t.name}/{m}[…]" for m in t.sliced if _may_be_slice(rule, t.name, m)]
        return found


def _may_be_slice(rule: Rule, task: str, name: str) -> bool:
    """Whether ``rule``'s metric selector could match ``task/name[category]`` for some category of the data."""
    selector = rule.metric or ""
    head, bracket, tail = selector.rpartition("[")
    if bracket and tail.endswith("]"):  # "*/pass_rate[adversarial]": the part before the bracket must fit
        return Rule(condition=rule.condition, limit=rule.limit, metric=head).selects(f"{task}/{name}", None)
    return rule.selects(f"{task}/{name}[{_ANY_CATEGORY}]", None)  # "*" or "tool-calls/pass_rate*" and the like


def of_suite(suite: Any) -> Catalogue:
    """The catalogue of a :class:`~gate.suite.Suite` from its declarations alone (no data file is read)."""
    from gate.tasks import task_types

    types = task_types()
    tasks = []
    for spec in suite.tasks:
        kind = types.get(spec.type)
        names, sliced = kind.metric_names(spec) if kind is not None else ([], [])
        tasks.append(TaskMetrics(spec.name, spec.type, spec.group, tuple(names), tuple(sliced), exact=not sliced))
    return Catalogue(suite.name, tuple(tasks))


def of_tasks(tasks: Iterable[Any], suite_name: str = "") -> Catalogue:
    """The exact catalogue of loaded tasks (:func:`gate.tasks.load_task` results): their data is read, so every
    per-category slice is known."""
    from gate.tasks import task_types

    types = task_types()
    out = []
    for task in tasks:
        spec = task.data.spec
        sliced = types[spec.type].metric_names(spec)[1] if spec.type in types else []
        out.append(TaskMetrics(spec.name, spec.type, spec.group, tuple(m.name for m in task.metrics),
                               tuple(sliced), exact=True))
    return Catalogue(suite_name, tuple(out))


# --------------------------------------------------------------------------- the check


def rule_problems(rules: "Thresholds | Sequence[Rule]", catalogue: Catalogue) -> list[BadInput]:
    """One problem per non-optional rule that selects no metric of ``catalogue``, located in the rules' file."""
    th = rules if isinstance(rules, Thresholds) else Thresholds(list(rules))
    problems = []
    for i, rule in enumerate(th.rules):
        if rule.optional:
            continue
        found = _problem(rule, catalogue)
        if found is not None:
            key, message = found
            problems.append(_located(th, f"/rules/{i}/{key}", message))
    return problems


def optional_unmatched(rules: "Thresholds | Sequence[Rule]", catalogue: Catalogue) -> int:
    """How many optional rules select no metric of ``catalogue`` (they will be skipped)."""
    th = rules if isinstance(rules, Thresholds) else Thresholds(list(rules))
    return sum(1 for rule in th.rules if rule.optional and not catalogue.matches(rule))


def check_rules(rules: "Thresholds | Sequence[Rule] | None", catalogue: Catalogue) -> None:
    """Raise :class:`BadInputs` (exit 2) naming every non-optional rule that selects no metric of ``catalogue``."""
    if rules is None:
        return
    problems = rule_problems(rules, catalogue)
    if problems:
        raise BadInputs(problems)


def check_rules_on_suite(rules: "Thresholds | Sequence[Rule] | None", suite: Any) -> None:
    """:func:`check_rules` against what ``suite`` declares (before its data is read; slices are let through)."""
    check_rules(rules, of_suite(suite))


def check_rules_on_tasks(rules: "Thresholds | Sequence[Rule] | None", tasks: Iterable[Any],
                         suite_name: str = "") -> None:
    """:func:`check_rules` against loaded tasks: exact, per-category slices included. Call it once the data is
    read and before any model loads (``gate run``: right after the tasks are loaded)."""
    check_rules(rules, of_tasks(tasks, suite_name))


def _located(th: Thresholds, pointer: str, message: str) -> BadInput:
    if th.source is not None:
        return th.source.error(pointer, message)
    return BadInput(message, location=pointer)


def _problem(rule: Rule, cat: Catalogue) -> tuple[str, str] | None:
    """(the rule's key at fault, the message) when the rule selects nothing, else None."""
    where = f" of suite {cat.suite!r}" if cat.suite else ""
    groups = cat.groups()
    if rule.group is not None and rule.group not in groups:
        return "group", (f"group {rule.group!r} is not a group{where} (its groups: {_listed(groups)})"
                         + _did_you_mean(rule.group, groups))
    if cat.matches(rule):
        return None
    if rule.metric is None:  # a known group without a metric: only a group of no task with metrics
        return "group", f"group {rule.group!r} has no metric{where}"
    anywhere = cat.matches(Rule(condition=rule.condition, limit=rule.limit, metric=rule.metric))
    if anywhere:  # the metric exists, but not in the rule's group
        elsewhere = sorted({f"{mid} (group {cat.group_of(mid)!r})" for mid in anywhere})
        return "metric", (f"metric {rule.metric!r} selects no metric of group {rule.group!r}; it matches "
                          f"{_listed(elsewhere, 4)} (a rule with both 'group' and 'metric' needs a metric in both)")
    return "metric", _no_metric(rule.metric, cat, where)


def _no_metric(selector: str, cat: Catalogue, where: str) -> str:
    """Why ``selector`` matches no metric id, with the nearest one it may mean."""
    names = {t.name: _names(t) for t in cat.tasks}
    tasks = list(names)
    if "/" not in selector:
        anywhere = f"*/{selector}"
        if any(ch in selector for ch in "*?") and cat.matches(Rule(condition="min", limit=0, metric=anywhere)):
            return f"metric {selector!r} is not a metric id (ids are TASK/METRIC); did you mean {anywhere!r}?"
        bare = [n for t in tasks for n in names[t]]
        if selector in bare or difflib.get_close_matches(selector, bare, n=1):
            name = selector if selector in bare else difflib.get_close_matches(selector, bare, n=1)[0]
            return (f"metric {selector!r} is not a metric id (ids are TASK/METRIC, e.g. {_tasks_with(name, names)}); "
                    f"did you mean '*/{name}'?")
        return f"metric {selector!r} is not a metric id (ids are TASK/METRIC, e.g. {_example(cat)})"
    task_part, metric_part = selector.split("/", 1)
    matched = [t for t in tasks if Rule(condition="min", limit=0, metric=task_part).selects(t, None)]
    if not matched:
        if task_part == HUMAN_TASK:
            return (f"metric {selector!r} comes from `gate human import`, not from a run of this suite: mark the "
                    "rule \"optional\": true so it applies once ratings are imported")
        close = difflib.get_close_matches(task_part, tasks, n=1)
        hint = ""
        if close:
            mended = close[0] + "/" + (_closest(metric_part, names[close[0]]) or metric_part)
            if cat.matches(Rule(condition="min", limit=0, metric=mended)):
                hint = f"; did you mean {mended!r}?"
        return f"metric {selector!r} names no task{where} (its tasks: {_listed(tasks)}){hint}"
    available = list(dict.fromkeys(n for t in matched for n in names[t]))
    fixed = _closest(metric_part, available)
    if fixed is not None:
        return f"metric {selector!r} matches no metric{where}; did you mean {task_part + '/' + fixed!r}?"
    scope = (f"task {matched[0]!r}" if len(matched) == 1 else
             "the suite's tasks" if len(matched) == len(tasks) else f"the tasks matching {task_part!r}")
    if "[" in metric_part and not any("[" in n for n in available):
        why = " (their data has no 'category')" if any(cat.task(t).sliced for t in matched) else \
            " (per-category metrics come from tasks of type pairs or generation)"
        return (f"metric {selector!r} matches no metric{where}: {scope} report{'s' if len(matched) == 1 else ''} "
                f"no per-category metric{why}; {'it reports' if len(matched) == 1 else 'they report'} "
                f"{_listed(available)}")
    return f"metric {selector!r} matches no metric{where}; {scope} report{'s' if len(matched) == 1 else ''} " \
           f"{_listed(available)}"


def _names(t: TaskMetrics) -> list[str]:
    """A task's metric names, with ``name[…]`` for slices whose categories are not known yet."""
    return list(t.names) + ([] if t.exact else [f"{m}[…]" for m in t.sliced])


def _closest(part: str, names: list[str]) -> str | None:
    """The metric name (or glob) ``part`` most likely means, or None. A slice keeps its category when only its
    base is wrong; a glob is mended word by word (``ndgc@*`` -> ``ndcg@*``) and offered only if it matches."""
    if part in names:
        return None
    if not any(ch in part for ch in "*?"):
        plain = [n for n in names if "[" not in n]
        slices = [n for n in names if "[" in n and not n.endswith("[…]")]
        base, bracket, category = part.partition("[")
        close = difflib.get_close_matches(part, slices if bracket else plain, n=1, cutoff=0.6)
        if close:
            return close[0]
        if bracket:
            bases = list(dict.fromkeys(n.split("[", 1)[0] for n in names if "[" in n))
            close = difflib.get_close_matches(base, bases, n=1, cutoff=0.6)
            if close and close[0] != base:
                return f"{close[0]}[{category}"
            return None
    words = sorted({w for n in names for w in re.findall(r"[A-Za-z0-9]+", n)})

    def mend(found: re.Match) -> str:
        word = found.group()
        close = difflib.get_close_matches(word, words, n=1, cutoff=0.6) if word not in words else [word]
        return close[0] if close else word

    mended = re.sub(r"[A-Za-z0-9]+", mend, part)
    probe = Rule(condition="min", limit=0, metric=mended)
    if mended != part and any(probe.selects(n.replace("[…]", f"[{_ANY_CATEGORY}]"), None) for n in names):
        return mended
    return None


def _tasks_with(name: str, names: dict[str, list[str]]) -> str:
    task = next(t for t, ns in names.items() if name in ns)
    return f"'{task}/{name}'"


def _example(cat: Catalogue) -> str:
    ids = cat.ids()
    return repr(ids[0]) if ids else "'stsb/spearman'"


def _listed(items: Sequence[str], limit: int = _LISTED) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f", … ({len(items) - limit} more)" if len(items) > limit else "")


def _did_you_mean(value: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(value, list(options), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
