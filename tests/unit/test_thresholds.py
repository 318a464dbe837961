"""Unit tests for gate.thresholds (contracts §4): rule selection, conditions, verdict."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from gate.errors import BadInput
from gate.thresholds import Rule, RuleResult, decide, evaluate, load_thresholds, rules_from_data

REPO_ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- helpers


def metric(candidate, baseline=None, higher_is_better=True):
    return {"candidate": candidate, "baseline": baseline, "higher_is_better": higher_is_better}


def run_one(rule: Rule, metric_id: str, m: dict, groups: dict | None = None) -> RuleResult:
    """Evaluate one rule on one metric and return its single result."""
    results = evaluate([rule], {metric_id: m}, groups or {})
    assert len(results) == 1, results
    return results[0]


def status_of(condition: str, limit: float, m: dict, **kw) -> str:
    return run_one(Rule(condition=condition, limit=limit, metric="t/m", **kw), "t/m", m).status


def result(status: str, name: str = "r", message: str = "msg") -> RuleResult:
    return RuleResult(name=name, metric="t/m", status=status, observed=None, limit=None, message=message,
                      condition="min", severity="block")


def write_json(tmp_path: Path, data, name: str = "thresholds.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return p


LOCATED = re.compile(r":\d+:\d+ \(/")  # "file:LINE:COL (/json/pointer)"


# --------------------------------------------------------------------------- min / max


@pytest.mark.parametrize(
    "candidate, expected",
    [(0.9, "pass"), (0.85, "pass"), (0.8499, "fail"), (0.0, "fail")],
)
def test_min_compares_candidate_to_limit(candidate, expected):
    assert status_of("min", 0.85, metric(candidate)) == expected


@pytest.mark.parametrize(
    "candidate, expected",
    [(0.1, "pass"), (0.3, "pass"), (0.3001, "fail")],
)
def test_max_compares_candidate_to_limit(candidate, expected):
    assert status_of("max", 0.3, metric(candidate)) == expected


def test_min_ignores_baseline_even_when_missing():
    # min/max only look at the candidate: a missing baseline is no reason to error.
    assert status_of("min", 0.5, metric(0.6, None)) == "pass"


def test_min_observed_is_candidate_value():
    r = run_one(Rule("min", 0.5, metric="t/m"), "t/m", metric(0.75, 0.1))
    assert r.observed == 0.75
    assert r.limit == 0.5


def test_max_boundary_passes_despite_float_error():
    # 0.1 + 0.2 == 0.30000000000000004 > 0.3 in floating point; it must still pass max 0.3.
    assert 0.1 + 0.2 > 0.3
    assert status_of("max", 0.3, metric(0.1 + 0.2)) == "pass"


# --------------------------------------------------------------------------- min_delta


@pytest.mark.parametrize(
    "candidate, expected",
    [
        (0.90, "pass"),  # +0.10
        (0.85, "pass"),  # +0.05 (float: 0.04999999999999993): exact boundary
        (0.84, "fail"),  # +0.04
        (0.70, "fail"),  # -0.10
    ],
)
def test_min_delta_absolute_higher_is_better(candidate, expected):
    assert status_of("min_delta", 0.05, metric(candidate, 0.8)) == expected


@pytest.mark.parametrize(
    "candidate, expected",
    [
        (90.0, "pass"),  # improvement = 100 - 90 = 10
        (95.0, "pass"),  # improvement = 5 (boundary)
        (96.0, "fail"),  # improvement = 4
        (105.0, "fail"),  # improvement = -5: got worse
    ],
)
def test_min_delta_lower_is_better_flips_direction(candidate, expected):
    # For latency, an improvement is a *decrease*: improvement = baseline - candidate.
    assert status_of("min_delta", 5.0, metric(candidate, 100.0, higher_is_better=False)) == expected


def test_min_delta_observed_is_signed_improvement_in_good_direction():
    # lower is better: baseline 100, candidate 90 -> improvement +10
    r = run_one(Rule("min_delta", 1.0, metric="t/m"), "t/m", metric(90.0, 100.0, higher_is_better=False))
    assert r.observed == pytest.approx(10.0)
    # higher is better: baseline 0.8, candidate 0.7 -> improvement -0.1
    r = run_one(Rule("min_delta", 0.0, metric="t/m"), "t/m", metric(0.7, 0.8))
    assert r.observed == pytest.approx(-0.1)
    assert r.status == "fail"


@pytest.mark.parametrize(
    "candidate, expected",
    [
        (0.88, "pass"),  # (0.88-0.8)/0.8 = 10 %
        (0.84, "pass"),  # (0.84-0.8)/0.8 = 5 % exactly (float: 0.0499999999999999)
        (0.83, "fail"),  # 3.75 %
    ],
)
def test_min_delta_relative_is_fraction_of_baseline(candidate, expected):
    assert status_of("min_delta", 0.05, metric(candidate, 0.8), relative=True) == expected


def test_min_delta_relative_boundary_is_below_limit_in_float():
    # Guard that the boundary case really exercises the tolerance.
    assert (0.84 - 0.8) / 0.8 < 0.05
    r = run_one(Rule("min_delta", 0.05, metric="t/m", relative=True), "t/m", metric(0.84, 0.8))
    assert r.status == "pass"
    assert r.observed == pytest.approx(0.05)


def test_min_delta_relative_absolute_would_differ():
    # baseline 0.5, candidate 0.53: absolute +0.03 (fails 0.05), relative 0.03/0.5 = 6 % (passes 5 %).
    m = metric(0.53, 0.5)
    assert status_of("min_delta", 0.05, m) == "fail"
    assert status_of("min_delta", 0.05, m, relative=True) == "pass"


def test_min_delta_relative_lower_is_better():
    # latency 200 -> 190: improvement (200-190)/200 = 5 % -> pass; 200 -> 192: 4 % -> fail
    assert status_of("min_delta", 0.05, metric(190.0, 200.0, False), relative=True) == "pass"
    assert status_of("min_delta", 0.05, metric(192.0, 200.0, False), relative=True) == "fail"


def test_relative_divides_by_absolute_baseline():
    # baseline -2, candidate -1 (higher is better): improvement (+1) / |-2| = +0.5.
    # Dividing by the signed baseline would give -0.5 and fail.
    assert status_of("min_delta", 0.5, metric(-1.0, -2.0), relative=True) == "pass"
    # baseline -2, candidate -3: (-1) / 2 = -0.5 -> drop 0.5
    assert status_of("max_drop", 0.4, metric(-3.0, -2.0), relative=True) == "fail"
    assert status_of("max_drop", 0.5, metric(-3.0, -2.0), relative=True) == "pass"


# --------------------------------------------------------------------------- max_drop


@pytest.mark.parametrize(
    "candidate, expected",
    [
        (0.90, "pass"),  # improved: drop -0.10
        (0.80, "pass"),  # unchanged
        (0.77, "pass"),  # drop 0.03
        (0.75, "pass"),  # drop 0.05 (float: 0.050000000000000044): boundary
        (0.74, "fail"),  # drop 0.06
    ],
)
def test_max_drop_absolute_higher_is_better(candidate, expected):
    assert status_of("max_drop", 0.05, metric(candidate, 0.8)) == expected


def test_max_drop_absolute_boundary_is_above_limit_in_float():
    assert 0.8 - 0.75 > 0.05
    r = run_one(Rule("max_drop", 0.05, metric="t/m"), "t/m", metric(0.75, 0.8))
    assert r.status == "pass"
    assert r.observed == pytest.approx(0.05)


@pytest.mark.parametrize(
    "candidate, expected",
    [
        (80.0, "pass"),  # faster: drop = candidate - baseline = -20
        (110.0, "pass"),  # slower by 10 = allowed
        (111.0, "fail"),  # slower by 11
    ],
)
def test_max_drop_lower_is_better_flips_direction(candidate, expected):
    # For latency the regression is an *increase*: drop = candidate - baseline.
    assert status_of("max_drop", 10.0, metric(candidate, 100.0, higher_is_better=False)) == expected


@pytest.mark.parametrize(
    "candidate, expected",
    [
        (0.78, "pass"),  # (0.8-0.78)/0.8 = 2.5 %
        (0.76, "pass"),  # (0.8-0.76)/0.8 = 5 % (float: 0.050000000000000044): boundary
        (0.75, "fail"),  # 6.25 %
    ],
)
def test_max_drop_relative(candidate, expected):
    assert status_of("max_drop", 0.05, metric(candidate, 0.8), relative=True) == expected


def test_max_drop_relative_lower_is_better_boundary():
    # latency 1.0 -> 1.05 is a 5 % regression; float gives 0.050000000000000044.
    assert (1.05 - 1.0) / 1.0 > 0.05
    assert status_of("max_drop", 0.05, metric(1.05, 1.0, False), relative=True) == "pass"
    # 1.0 -> 1.06: 6 % regression
    assert status_of("max_drop", 0.05, metric(1.06, 1.0, False), relative=True) == "fail"


def test_max_drop_zero_means_no_regression_at_all():
    assert status_of("max_drop", 0.0, metric(0.8, 0.8)) == "pass"
    assert status_of("max_drop", 0.0, metric(0.799, 0.8)) == "fail"


def test_max_drop_observed_is_positive_drop():
    # baseline 0.8, candidate 0.7 -> dropped by 0.1
    r = run_one(Rule("max_drop", 0.2, metric="t/m"), "t/m", metric(0.7, 0.8))
    assert r.observed == pytest.approx(0.1)
    assert r.status == "pass"


# --------------------------------------------------------------------------- max_ratio


@pytest.mark.parametrize(
    "candidate, expected",
    [
        (100.0, "pass"),  # ratio 1
        (200.0, "pass"),  # ratio 2 (boundary)
        (201.0, "fail"),  # ratio 2.01
    ],
)
def test_max_ratio(candidate, expected):
    assert status_of("max_ratio", 2.0, metric(candidate, 100.0, higher_is_better=False)) == expected


def test_max_ratio_observed_is_candidate_over_baseline():
    # 150 / 100 = 1.5
    r = run_one(Rule("max_ratio", 2.0, metric="t/m"), "t/m", metric(150.0, 100.0, False))
    assert r.observed == pytest.approx(1.5)


def test_max_ratio_boundary_passes_despite_float_error():
    # 2.1 / 0.7 == 3.0000000000000004 in floating point; it is exactly 3x.
    assert 2.1 / 0.7 > 3
    assert status_of("max_ratio", 3.0, metric(2.1, 0.7, False)) == "pass"


def test_max_ratio_baseline_zero_is_error():
    r = run_one(Rule("max_ratio", 2.0, metric="t/m"), "t/m", metric(5.0, 0.0, False))
    assert r.status == "error"
    assert "0" in r.message


# --------------------------------------------------------------------------- tolerance is small


def test_tolerance_does_not_hide_real_shortfalls():
    # 1e-6 below the limit is a real miss, far beyond a 1e-9 rounding tolerance.
    assert status_of("min", 0.85, metric(0.85 - 1e-6)) == "fail"
    assert status_of("max_drop", 0.05, metric(0.8 - 0.05 - 1e-6, 0.8)) == "fail"


# --------------------------------------------------------------------------- missing / NaN / zero baseline


@pytest.mark.parametrize("bad", [None, float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("condition", ["min", "max", "min_delta", "max_drop", "max_ratio"])
def test_bad_candidate_is_error(condition, bad):
    # limit chosen so any comparison with a real number would pass or fail, never error
    r = run_one(Rule(condition, 1.0, metric="t/m"), "t/m", metric(bad, 0.5))
    assert r.status == "error"


@pytest.mark.parametrize("bad", [None, float("nan")])
@pytest.mark.parametrize("condition", ["min_delta", "max_drop", "max_ratio"])
def test_bad_baseline_is_error_for_comparisons(condition, bad):
    r = run_one(Rule(condition, 10.0, metric="t/m"), "t/m", metric(0.5, bad))
    assert r.status == "error"


def test_missing_candidate_key_is_error():
    r = run_one(Rule("min", 0.0, metric="t/m"), "t/m", {"baseline": 0.5, "higher_is_better": True})
    assert r.status == "error"


def test_bool_value_is_not_a_number():
    # True would otherwise compare as 1.0 and pass min 0.5
    assert status_of("min", 0.5, metric(True)) == "error"


@pytest.mark.parametrize("condition", ["min_delta", "max_drop"])
@pytest.mark.parametrize("candidate, higher_is_better, expected", [
    (0.5, True, "pass"),     # from 0 to 0.5 (e.g. an adversarial pass rate): an unbounded improvement
    (0.5, False, "fail"),    # a lower-is-better metric rising from 0: an unbounded regression
    (-0.5, True, "fail"),
])
def test_relative_change_from_a_zero_baseline_is_unbounded(condition, candidate, higher_is_better, expected):
    r = run_one(Rule(condition, 0.05, metric="t/m", relative=True), "t/m",
                metric(candidate, 0.0, higher_is_better))
    assert r.status == expected
    assert r.observed is None  # +-infinity is not a number results.json can hold
    assert "baseline of 0" in r.message


@pytest.mark.parametrize("condition, expected", [("min_delta", "fail"), ("max_drop", "pass")])
def test_relative_with_zero_baseline_and_no_change(condition, expected):
    assert status_of(condition, 0.05, metric(0.0, 0.0), relative=True) == expected


@pytest.mark.parametrize("condition", ["min_delta", "max_drop"])
def test_absolute_delta_with_zero_baseline_is_fine(condition):
    # candidate 0.5 - baseline 0 = +0.5: min_delta 0.05 passes, max_drop 0.05 passes
    assert status_of(condition, 0.05, metric(0.5, 0.0)) == "pass"


def test_nan_never_leads_to_pass_verdict():
    results = evaluate([Rule("min_delta", -1.0, metric="t/m")], {"t/m": metric(float("nan"), 0.5)}, {})
    verdict, _ = decide(results, [], rules_given=True)
    assert verdict == "error"


def test_warn_rule_with_nan_is_still_an_error():
    # contracts §4: NaN is an error unless optional; severity only softens *failures*.
    r = run_one(Rule("min", 0.5, metric="t/m", severity="warn"), "t/m", metric(float("nan")))
    assert r.status == "error"


def test_optional_rule_with_nan_is_skipped():
    r = run_one(Rule("min", 0.5, metric="t/m", optional=True), "t/m", metric(float("nan")))
    assert r.status == "skipped"
    assert "optional" in r.message


# --------------------------------------------------------------------------- selection


METRICS = {
    "stsb/spearman": metric(0.8, 0.8),
    "stsb/spearman_x": metric(0.8, 0.8),
    "sick/spearman": metric(0.7, 0.7),
    "tickets/ndcg@10": metric(0.5, 0.4),
    "tickets/recall@10": metric(0.6, 0.6),
    "faq/ndcg@10": metric(0.3, 0.3),
    "gen/pass_rate[adversarial]": metric(0.95, 0.9),
    "gen/pass_rate[benign]": metric(0.99, 0.99),
    "gen/pass_ratea": metric(0.1, 0.1),
    "gen/pass_rate": metric(0.9, 0.9),
    "a.b/x": metric(1.0, 1.0),
    "axb/x": metric(1.0, 1.0),
}
GROUPS = {"stsb": "general", "sick": "general", "tickets": "target", "faq": "other", "gen": "target"}


def selected(rule: Rule, metrics=METRICS, groups=GROUPS) -> set[str]:
    return {r.metric for r in evaluate([rule], metrics, groups)}


def test_exact_metric_selects_only_itself():
    assert selected(Rule("min", 0.0, metric="stsb/spearman")) == {"stsb/spearman"}


def test_star_glob_matches_any_task_but_is_anchored():
    # "*/spearman" must not match "stsb/spearman_x" (anchored at the end)
    assert selected(Rule("min", 0.0, metric="*/spearman")) == {"stsb/spearman", "sick/spearman"}


def test_question_mark_matches_exactly_one_character():
    # "????/spearman" has four characters before the slash: stsb and sick
    assert selected(Rule("min", 0.0, metric="????/spearman")) == {"stsb/spearman", "sick/spearman"}
    # "???/spearman" matches neither: it is an error, not a match
    assert [r.status for r in evaluate([Rule("min", 0.0, metric="???/spearman")], METRICS, GROUPS)] == ["error"]


def test_brackets_in_metric_id_are_literal():
    # With fnmatch semantics "[adversarial]" would be a char class and match "gen/pass_ratea".
    assert selected(Rule("min", 0.0, metric="gen/pass_rate[adversarial]")) == {"gen/pass_rate[adversarial]"}


def test_glob_inside_brackets():
    assert selected(Rule("min", 0.0, metric="gen/pass_rate[*]")) == {
        "gen/pass_rate[adversarial]", "gen/pass_rate[benign]"}


def test_dot_in_pattern_is_literal():
    assert selected(Rule("min", 0.0, metric="a.b/x")) == {"a.b/x"}


def test_group_selects_every_metric_of_its_tasks():
    assert selected(Rule("min", 0.0, group="general")) == {"stsb/spearman", "stsb/spearman_x", "sick/spearman"}


def test_group_and_metric_must_both_match():
    # */ndcg@10 alone would also select faq/ndcg@10 (group "other")
    assert selected(Rule("min", 0.0, metric="*/ndcg@10")) == {"tickets/ndcg@10", "faq/ndcg@10"}
    assert selected(Rule("min", 0.0, group="target", metric="*/ndcg@10")) == {"tickets/ndcg@10"}


def test_group_and_metric_with_no_common_metric_is_error():
    results = evaluate([Rule("min", 0.0, group="general", metric="*/ndcg@10")], METRICS, GROUPS)
    assert [r.status for r in results] == ["error"]


def test_rule_selects_each_metric_separately():
    # group "target" metrics: tickets/ndcg@10 (0.4 -> 0.5) improves, the rest are flat or
    # improve less; min_delta 0.05 therefore passes only for tickets/ndcg@10 (+0.1) and
    # gen/pass_rate[adversarial] (+0.05).
    results = evaluate([Rule("min_delta", 0.05, group="target")], METRICS, GROUPS)
    by_metric = {r.metric: r.status for r in results}
    assert by_metric == {
        "tickets/ndcg@10": "pass",
        "tickets/recall@10": "fail",
        "gen/pass_rate[adversarial]": "pass",
        "gen/pass_rate[benign]": "fail",
        "gen/pass_ratea": "fail",
        "gen/pass_rate": "fail",
    }


def test_rule_selects_metric_of_task_without_group_only_by_metric():
    # a task missing from `groups` has no group: a group rule cannot select it
    metrics = {"lonely/acc": metric(0.9, 0.9)}
    assert [r.status for r in evaluate([Rule("min", 0.0, group="general")], metrics, {})] == ["error"]
    assert [r.status for r in evaluate([Rule("min", 0.0, metric="lonely/*")], metrics, {})] == ["pass"]


def test_selects_method_direct():
    rule = Rule("min", 0.0, group="target", metric="*/ndcg@10")
    assert rule.selects("tickets/ndcg@10", "target")
    assert not rule.selects("tickets/ndcg@10", "general")
    assert not rule.selects("tickets/ndcg@100", "target")
    assert not rule.selects("tickets/ndcg@10", None)


# --------------------------------------------------------------------------- no match / optional / severity


def test_rule_selecting_nothing_is_error_and_error_verdict():
    rule = Rule("min", 0.5, metric="missing/metric")
    results = evaluate([rule], METRICS, GROUPS)
    assert [r.status for r in results] == ["error"]
    assert "missing/metric" in results[0].message
    verdict, reason = decide(results, [], rules_given=True)
    assert verdict == "error"
    assert "missing/metric" in reason


def test_optional_rule_selecting_nothing_is_skipped():
    rule = Rule("min", 0.5, metric="missing/metric", optional=True)
    results = evaluate([rule], METRICS, GROUPS)
    assert [r.status for r in results] == ["skipped"]
    assert "optional" in results[0].message
    passing = evaluate([Rule("min", 0.0, metric="stsb/spearman")], METRICS, GROUPS)
    verdict, reason = decide(passing + results, [], rules_given=True)
    assert verdict == "pass"
    assert "skipped" in reason


def test_only_skipped_rules_is_error_not_pass():
    """A thresholds file none of whose rules applies checked nothing: never a pass."""
    results = evaluate([Rule("min", 0.5, metric="missing/metric", optional=True)], METRICS, GROUPS)
    verdict, reason = decide(results, [], rules_given=True)
    assert verdict == "error"
    assert "No rule applied" in reason


def test_unknown_group_is_error():
    assert [r.status for r in evaluate([Rule("min", 0.0, group="nope")], METRICS, GROUPS)] == ["error"]


def test_warn_severity_failure_is_warn_and_does_not_block():
    # candidate 0.6 < min 0.7 -> a failure, softened to warn
    rule = Rule("min", 0.7, metric="t/m", severity="warn")
    results = evaluate([rule], {"t/m": metric(0.6)}, {})
    assert [r.status for r in results] == ["warn"]
    verdict, reason = decide(results, [], rules_given=True)
    assert verdict == "pass"
    assert "warning" in reason


def test_warn_severity_passing_rule_is_pass():
    assert status_of("min", 0.5, metric(0.6), severity="warn") == "pass"


def test_block_and_warn_rules_together():
    rules = [Rule("min", 0.7, metric="t/m", severity="warn"), Rule("min", 0.9, metric="t/m")]
    results = evaluate(rules, {"t/m": metric(0.6)}, {})
    assert [r.status for r in results] == ["warn", "fail"]
    assert decide(results, [], rules_given=True)[0] == "fail"


def test_result_carries_rule_name_and_limit():
    rule = Rule("min", 0.7, metric="t/m", name="quality floor")
    r = run_one(rule, "t/m", metric(0.8))
    assert r.name == "quality floor"
    assert r.limit == 0.7
    assert r.condition == "min"
    assert r.to_json()["status"] == "pass"


def test_untitled_rule_title_names_selector_and_condition():
    title = Rule("min_delta", 0.05, metric="*/ndcg@10", group="target", relative=True).title
    assert "target" in title and "*/ndcg@10" in title and "min_delta" in title
    assert "5%" in title  # 0.05 relative shown as a percentage


# --------------------------------------------------------------------------- decide


def test_decide_no_rules_is_pass_saying_nothing_checked():
    verdict, reason = decide([], [], rules_given=False)
    assert verdict == "pass"
    assert "no" in reason.lower() and "check" in reason.lower()


def test_decide_all_pass():
    verdict, reason = decide([result("pass"), result("pass")], [], rules_given=True)
    assert verdict == "pass"
    assert "2" in reason


def test_decide_fail_beats_pass():
    verdict, reason = decide([result("pass"), result("fail", name="floor", message="too low")], [], True)
    assert verdict == "fail"
    assert "floor" in reason and "too low" in reason


def test_decide_error_beats_fail():
    rr = [result("fail", name="a"), result("error", name="b", message="NaN seen"), result("pass")]
    verdict, reason = decide(rr, [], True)
    assert verdict == "error"
    assert "NaN seen" in reason


def test_decide_errors_list_beats_everything():
    rr = [result("fail", name="a"), result("error", name="b"), result("pass")]
    verdict, reason = decide(rr, ["model failed to load"], True)
    assert verdict == "error"
    assert "model failed to load" in reason


def test_decide_errors_list_beats_all_passing_rules():
    verdict, _ = decide([result("pass")], ["endpoint down"], True)
    assert verdict == "error"


def test_decide_errors_without_rules_is_error():
    verdict, _ = decide([], ["boom"], rules_given=False)
    assert verdict == "error"


def test_decide_counts_additional_failures():
    verdict, reason = decide([result("fail", name="a"), result("fail", name="b")], [], True)
    assert verdict == "fail"
    assert "1 more" in reason


def test_decide_skipped_and_warn_do_not_block():
    verdict, _ = decide([result("skipped"), result("warn"), result("pass")], [], True)
    assert verdict == "pass"


# --------------------------------------------------------------------------- rules_from_data / load_thresholds


def test_rules_from_data_reads_every_field_and_defaults():
    rules = rules_from_data({"version": 1, "rules": [
        {"name": "n", "group": "g", "metric": "*/x", "max_drop": 0.05, "relative": True,
         "severity": "warn", "optional": True},
        {"metric": "a/b", "min": 1},
    ]})
    assert rules[0] == Rule(condition="max_drop", limit=0.05, metric="*/x", group="g", name="n", relative=True,
                            severity="warn", optional=True)
    assert rules[1] == Rule(condition="min", limit=1.0, metric="a/b")
    assert isinstance(rules[1].limit, float)


@pytest.mark.parametrize("condition", ["min", "max", "min_delta", "max_drop", "max_ratio"])
def test_load_thresholds_accepts_each_condition(tmp_path, condition):
    p = write_json(tmp_path, {"version": 1, "rules": [{"metric": "a/b", condition: 0.5}]})
    assert load_thresholds(p).rules == [Rule(condition=condition, limit=0.5, metric="a/b")]


def test_load_thresholds_yaml(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text("version: 1\nrules:\n  - group: target\n    min_delta: 0.05\n    relative: true\n", encoding="utf-8")
    assert load_thresholds(p).rules == [Rule("min_delta", 0.05, group="target", relative=True)]


def test_load_thresholds_empty_rule_list_is_bad_input(tmp_path):
    # a thresholds file that checks nothing is a mistake, not a pass
    with pytest.raises(BadInput, match="expected at least one rule"):
        load_thresholds(write_json(tmp_path, {"version": 1, "rules": []}))


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_load_thresholds_rejects_non_finite_limits(tmp_path, literal):
    path = tmp_path / "thresholds.json"
    path.write_text('{"version": 1, "rules": [{"metric": "a/b", "max_drop": %s}]}' % literal)
    with pytest.raises(BadInput, match="NaN and Infinity are not allowed"):
        load_thresholds(path)


class Raised:
    """A BadInput and its message with the (test-named) tmp directory replaced by <dir>."""

    def __init__(self, err: BadInput, path: Path):
        self.err = err
        self.text = str(err).replace(str(path.parent), "<dir>")

    def __str__(self) -> str:
        return self.text


def _raise(path: Path) -> Raised:
    with pytest.raises(BadInput) as info:
        load_thresholds(path)
    return Raised(info.value, path)


def _bad(tmp_path: Path, rule: dict) -> Raised:
    return _raise(write_json(tmp_path, {"version": 1, "rules": [{"metric": "ok/one", "min": 0.1}, rule]}))


def _assert_located(err: Raised, path_name: str, pointer: str):
    msg = str(err)
    assert "<dir>/" + path_name in msg
    assert LOCATED.search(msg), msg
    assert pointer in msg


def test_unknown_key_with_did_you_mean(tmp_path):
    err = _bad(tmp_path, {"metric": "a/b", "min_delta": 0.1, "relativ": True})
    _assert_located(err, "thresholds.json", "/rules/1/relativ")
    assert "unknown key 'relativ'" in str(err)
    assert "did you mean 'relative'" in str(err)
    # the rule is on line 9 of the indent=2 dump (see write_json): {, "version", "rules": [,
    # rule 0 = lines 4-7, rule 1 starts at 8 with "metric" on 9, min_delta 10, relativ 11.
    assert "thresholds.json:11:" in str(err)


def test_misspelled_condition_reports_the_typo_alone(tmp_path):
    err = _bad(tmp_path, {"metric": "a/b", "min_detla": 0.1})
    msg = str(err)
    assert msg.endswith("(/rules/1/min_detla): unknown key 'min_detla'; did you mean 'min_delta'?")
    assert "exactly one of" not in msg  # the missing condition is the typo's consequence: one cause, one message
    assert all(LOCATED.search(line) for line in msg.splitlines())


def test_a_missing_condition_without_a_typo_is_still_reported(tmp_path):
    err = _bad(tmp_path, {"metric": "a/b", "limit": 0.1})
    msg = str(err)
    assert "unknown key 'limit'" in msg and "exactly one of" in msg


def test_two_conditions_in_one_rule(tmp_path):
    err = _bad(tmp_path, {"metric": "a/b", "min": 0.1, "max": 0.9})
    _assert_located(err, "thresholds.json", "/rules/1")
    assert "exactly one" in str(err)
    assert "'min', 'max'" in str(err)  # names the conditions that were given


def test_no_condition(tmp_path):
    err = _bad(tmp_path, {"metric": "a/b"})
    _assert_located(err, "thresholds.json", "/rules/1")
    assert "exactly one" in str(err)


def test_no_selector(tmp_path):
    err = _bad(tmp_path, {"min": 0.5})
    _assert_located(err, "thresholds.json", "/rules/1")
    assert "'metric'" in str(err) and "'group'" in str(err)


def test_relative_with_min(tmp_path):
    err = _bad(tmp_path, {"metric": "a/b", "min": 0.5, "relative": True})
    _assert_located(err, "thresholds.json", "/rules/1")
    # The user must be told that 'relative' is the offending key (schema's errorMessage).
    assert "relative" in str(err)


@pytest.mark.parametrize(
    "rule, pointer, expected",
    [
        ({"metric": "a/b", "min": "0.5"}, "/rules/1/min", "expected number"),
        ({"metric": 3, "min": 0.5}, "/rules/1/metric", "expected string"),
        ({"metric": "a/b", "min_delta": 0.1, "relative": "yes"}, "/rules/1/relative", "expected boolean"),
        ({"metric": "a/b", "min": 0.5, "severity": "warning"}, "/rules/1/severity", "did you mean 'warn'"),
    ],
)
def test_wrong_type(tmp_path, rule, pointer, expected):
    err = _bad(tmp_path, rule)
    _assert_located(err, "thresholds.json", pointer)
    assert expected in str(err)


def test_negative_max_drop_rejected(tmp_path):
    err = _bad(tmp_path, {"metric": "a/b", "max_drop": -0.1})
    _assert_located(err, "thresholds.json", "/rules/1/max_drop")


def test_wrong_version(tmp_path):
    err = _raise(write_json(tmp_path, {"version": 2, "rules": []}))
    _assert_located(err, "thresholds.json", "/version")


def test_all_problems_reported_at_once(tmp_path):
    p = write_json(tmp_path, {"version": 1, "rules": [
        {"metric": "a/b", "min": "x"},
        {"metric": "a/b"},
        {"metric": "a/b", "max": 1, "severity": "loud"},
    ]})
    lines = str(_raise(p)).splitlines()
    assert len(lines) == 3
    assert "/rules/0/min" in lines[0]
    assert "/rules/1" in lines[1]
    assert "/rules/2/severity" in lines[2]


def test_tab_indented_json_still_reports_line_and_column(tmp_path):
    # Tabs are valid JSON whitespace; the location must not depend on indentation style.
    p = tmp_path / "thresholds.json"
    p.write_text('{\n\t"version": 1,\n\t"rules": [\n\t\t{"metric": "a/b", "min": "x"}\n\t]\n}\n', encoding="utf-8")
    err = _raise(p)
    _assert_located(err, "thresholds.json", "/rules/0/min")
    assert "thresholds.json:4:" in str(err)  # the bad value is on line 4  # the bad value is on line 4


def test_minified_json_reports_line_and_column(tmp_path):
    p = tmp_path / "thresholds.json"
    p.write_text('{"version":1,"rules":[{"metric":"a/b","min":"x"}]}', encoding="utf-8")
    err = _raise(p)
    # the key "min" starts at column 39, its value "x" at column 45 (either locates it):
    assert len('{"version":1,"rules":[{"metric":"a/b",') == 38
    assert len('{"version":1,"rules":[{"metric":"a/b","min":') == 44
    assert re.search(r"<dir>/thresholds\.json:1:(39|45) \(/rules/0/min\)", str(err)), str(err)


def test_missing_thresholds_file(tmp_path):
    err = _raise(tmp_path / "nope.json")
    assert str(err).startswith("<dir>/nope.json: ")
    assert "not found" in str(err)


def test_bad_input_exit_code(tmp_path):
    assert _bad(tmp_path, {"metric": "a/b"}).err.exit_code == 2


# --------------------------------------------------------------------------- shipped files


def test_repo_example_thresholds_validates():
    path = REPO_ROOT / "thresholds.example.json"
    rules = load_thresholds(path).rules
    assert rules
    conditions = {r.condition for r in rules}
    # The go/no-go checklist needs at least an improvement, a regression and a ratio rule.
    assert {"min_delta", "max_drop", "max_ratio"} <= conditions


def test_demo_thresholds_validate():
    path = REPO_ROOT / "examples" / "demo" / "thresholds.json"
    rules = load_thresholds(path).rules
    assert rules
    assert all(isinstance(r.limit, float) and not math.isnan(r.limit) for r in rules)
