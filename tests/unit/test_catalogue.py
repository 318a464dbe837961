"""gate.catalogue: the metric ids a suite will produce, known before any model loads, and the check of every
rule's selector against them (exit 2 with the rule's file:line:column and a did-you-mean)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import task_spec, write_jsonl
from gate import catalogue
from gate.errors import BadInputs
from gate.suite import load_suite
from gate.tasks import load_task, task_types
from gate.thresholds import Rule, load_thresholds

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo" / "suite.yaml"
TOOLS = ROOT / "examples" / "tool-calling" / "suite.yaml"
EXAMPLE_SUITES = [DEMO, TOOLS, ROOT / "examples" / "probes" / "suite.yaml",
                  ROOT / "examples" / "classification" / "suite.yaml"]


def thresholds_file(tmp_path: Path, *rules: dict) -> Path:
    """A thresholds file with one rule per line: rule i is on line i + 2, its keys where json.dumps puts them."""
    lines = ",\n".join("  " + json.dumps(r) for r in rules)
    path = tmp_path / "thresholds.json"
    path.write_text('{"version": 1, "rules": [\n' + lines + "\n]}\n", encoding="utf-8")
    return path


def problems(tmp_path: Path, suite: Path, *rules: dict, loaded: bool = False) -> list[str]:
    th = load_thresholds(thresholds_file(tmp_path, *rules))
    s = load_suite(suite)
    cat = catalogue.of_tasks([load_task(t) for t in s.tasks], s.name) if loaded else catalogue.of_suite(s)
    return [str(p) for p in catalogue.rule_problems(th, cat)]


def col(rule: dict, key: str) -> int:
    """The 1-based column of ``key`` in the one-line JSON of ``rule`` as :func:`thresholds_file` writes it."""
    return 2 + json.dumps(rule).index(f"\"{key}\"") + 1


# =========================================================================== each selector kind


def test_an_exact_id_with_a_misspelled_metric_is_located_with_a_did_you_mean(tmp_path):
    r = {"metric": "cranfield/ndgc@10", "min_delta": 0.05}
    (msg,) = problems(tmp_path, DEMO, r)
    assert msg == (f"{tmp_path / 'thresholds.json'}:2:{col(r, 'metric')} (/rules/0/metric): metric "
                   "'cranfield/ndgc@10' matches no metric of suite 'demo-cranfield'; did you mean 'cranfield/ndcg@10'?")


def test_an_exact_id_naming_no_task_lists_the_tasks(tmp_path):
    r = {"metric": "tickets/recall@10", "max_drop": 0.0}
    (msg,) = problems(tmp_path, DEMO, r)
    assert msg.endswith(":2:4 (/rules/0/metric): metric 'tickets/recall@10' names no task of suite "
                        "'demo-cranfield' (its tasks: stsb, cranfield)")


def test_a_misspelled_task_and_metric_get_one_suggestion_for_both(tmp_path):
    (msg,) = problems(tmp_path, DEMO, {"metric": "cranfeld/ndgc@10", "min": 0.3})
    assert msg.endswith("metric 'cranfeld/ndgc@10' names no task of suite 'demo-cranfield' (its tasks: stsb, "
                        "cranfield); did you mean 'cranfield/ndcg@10'?")


def test_a_glob_with_a_misspelled_metric_suggests_the_glob_that_matches(tmp_path):
    r = {"name": "target improves", "group": "target", "metric": "*/ndgc@10", "min_delta": 0.05, "relative": True}
    (msg,) = problems(tmp_path, DEMO, r)
    assert msg == (f"{tmp_path / 'thresholds.json'}:2:{col(r, 'metric')} (/rules/0/metric): metric '*/ndgc@10' "
                   "matches no metric of suite 'demo-cranfield'; did you mean '*/ndcg@10'?")
    (msg,) = problems(tmp_path, DEMO, {"metric": "cranfield/ndgc*", "min": 0})
    assert msg.endswith("metric 'cranfield/ndgc*' matches no metric of suite 'demo-cranfield'; "
                        "did you mean 'cranfield/ndcg*'?")


def test_a_metric_without_its_task_is_told_the_id_form(tmp_path):
    (msg,) = problems(tmp_path, DEMO, {"metric": "ndcg@10", "min": 0})
    assert msg.endswith("metric 'ndcg@10' is not a metric id (ids are TASK/METRIC, e.g. 'cranfield/ndcg@10'); "
                        "did you mean '*/ndcg@10'?")


def test_a_wrong_group_lists_the_groups_with_a_did_you_mean(tmp_path):
    r = {"group": "generl", "max_drop": 0.05, "relative": True}
    (msg,) = problems(tmp_path, DEMO, r)
    assert msg == (f"{tmp_path / 'thresholds.json'}:2:{col(r, 'group')} (/rules/0/group): group 'generl' is not "
                   "a group of suite 'demo-cranfield' (its groups: general, target); did you mean 'general'?")


def test_a_metric_outside_the_rules_group_says_where_it_is(tmp_path):
    (msg,) = problems(tmp_path, DEMO, {"group": "general", "metric": "*/ndcg@10", "min": 0})
    assert msg.endswith("metric '*/ndcg@10' selects no metric of group 'general'; it matches cranfield/ndcg@10 "
                        "(group 'target') (a rule with both 'group' and 'metric' needs a metric in both)")


def test_a_category_slice_is_checked_once_the_data_is_read(tmp_path):
    good = {"metric": "*/pass_rate[adversarial]", "min": 0.9}
    typo = {"metric": "banking-tools/pass_rate[adversrial]", "min": 0.9}
    # from the suite alone the categories are unknown: a slice selector waits for the data
    assert problems(tmp_path, TOOLS, good, typo) == []
    # once the cases are read, the misspelled category is found, with the one it means
    (msg,) = problems(tmp_path, TOOLS, good, typo, loaded=True)
    assert msg.endswith(":3:4 (/rules/1/metric): metric 'banking-tools/pass_rate[adversrial]' matches no metric "
                        "of suite 'tool-calling'; did you mean 'banking-tools/pass_rate[adversarial]'?")


def test_a_slice_of_a_misspelled_metric_is_found_from_the_suite_alone(tmp_path):
    (msg,) = problems(tmp_path, TOOLS, {"metric": "*/pass_rat[adversarial]", "min": 0.9})
    assert msg.endswith("metric '*/pass_rat[adversarial]' matches no metric of suite 'tool-calling'; "
                        "did you mean '*/pass_rate[adversarial]'?")


def test_a_slice_on_tasks_that_have_no_categories(tmp_path):
    (msg,) = problems(tmp_path, DEMO, {"metric": "*/spearman[x]", "min": 0})
    assert msg.endswith("metric '*/spearman[x]' matches no metric of suite 'demo-cranfield': the suite's tasks "
                        "report no per-category metric (per-category metrics come from tasks of type pairs or "
                        "generation); they report spearman, pearson, recall@1, recall@5, recall@10, precision@1, "
                        "precision@5, precision@10, mrr@1, mrr@5, mrr@10, ndcg@1, … (5 more)")


def test_human_metrics_come_from_an_import_and_need_an_optional_rule(tmp_path):
    (msg,) = problems(tmp_path, DEMO, {"metric": "human/preference", "min": 0.6})
    assert msg.endswith("metric 'human/preference' comes from `gate human import`, not from a run of this suite: "
                        "mark the rule \"optional\": true so it applies once ratings are imported")


def test_optional_rules_may_select_nothing_and_good_rules_pass(tmp_path):
    assert problems(tmp_path, DEMO,
                    {"metric": "human/preference", "min": 0.6, "optional": True},
                    {"metric": "*/ndgc@10", "min": 0.1, "optional": True, "severity": "warn"},
                    {"group": "target", "metric": "*/ndcg@10", "min_delta": 0.05},
                    {"group": "general", "max_drop": 0.05, "relative": True},
                    {"metric": "stsb/spearman", "min": 0.7}) == []


def test_every_bad_rule_is_listed_with_its_own_line(tmp_path):
    th = load_thresholds(thresholds_file(tmp_path, {"metric": "*/spearman", "min": 0},
                                         {"metric": "*/ndgc@10", "min": 0}, {"group": "x", "min": 0}))
    with pytest.raises(BadInputs) as err:
        catalogue.check_rules_on_suite(th, load_suite(DEMO))
    assert [p.location.split(" ")[0] for p in err.value.problems] == ["3:4", "4:4"]


def test_the_shipped_thresholds_fit_their_suites():
    for suite, th in [(DEMO, DEMO.parent / "thresholds.json"), (TOOLS, ROOT / "thresholds.example.json"),
                      (ROOT / "examples" / "probes" / "suite.yaml", ROOT / "examples" / "probes" / "thresholds.json"),
                      (ROOT / "examples" / "classification" / "suite.yaml",
                       ROOT / "examples" / "classification" / "thresholds.json")]:
        s = load_suite(suite)
        catalogue.check_rules_on_tasks(load_thresholds(th), [load_task(t) for t in s.tasks], s.name)


def test_rules_without_a_file_are_located_by_pointer():
    (p,) = catalogue.rule_problems([Rule("min", 0.1, metric="*/ndgc@10")], catalogue.of_suite(load_suite(DEMO)))
    assert str(p) == "/rules/0/metric: metric '*/ndgc@10' matches no metric of suite 'demo-cranfield'; " \
                     "did you mean '*/ndcg@10'?"


# =========================================================================== the declarations match the tasks


def _loaded_examples():
    for path in EXAMPLE_SUITES:
        s = load_suite(path)
        for t in s.tasks:
            yield t, load_task(t)


def _extra_tasks(tmp_path: Path):
    """The types no example suite has: perplexity, pairwise (with and without a reference), a retrieval k."""
    cases = shutil.copy(TOOLS.parent / "data" / "general-intent.jsonl", tmp_path / "cases.jsonl")
    write_jsonl(tmp_path / "texts.jsonl", [{"text": "one text"}, {"text": "another text"}])
    judge = {"provider": "openai", "model": "judge-1"}
    yield task_spec(tmp_path, "perplexity", data="texts.jsonl")
    yield task_spec(tmp_path, "pairwise", cases=Path(cases).name, judge=judge)
    yield task_spec(tmp_path, "pairwise", cases=Path(cases).name, judge=judge, reference=judge)
    d = DEMO.parent / "data" / "cranfield"
    yield task_spec(tmp_path, "retrieval", queries=str(d / "queries-test.jsonl"), corpus=str(d / "corpus.jsonl"),
                    qrels=str(d / "qrels-test.jsonl"), k=[3, 100])


def test_every_task_type_declares_the_metrics_it_reports(tmp_path):
    seen = set()
    pairs = list(_loaded_examples()) + [(spec, load_task(spec)) for spec in _extra_tasks(tmp_path)]
    for spec, task in pairs:
        names, sliced = task_types()[spec.type].metric_names(spec)
        reported = [m.name for m in task.metrics]
        assert names == [n for n in reported if "[" not in n], spec.type
        assert {n.split("[", 1)[0] for n in reported if "[" in n} <= set(sliced), spec.type
        seen.add(spec.type)
    assert seen == set(task_types())  # a new task type is covered here too
