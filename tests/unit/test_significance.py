"""Significance-aware rules, Holm correction and sample-size warnings (gate.thresholds, issue 6)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from gate.errors import BadInput
from gate.stats import examples_needed, min_detectable_effect, paired_mean_delta
from gate.thresholds import Rule, Thresholds, evaluate, judge, load_thresholds


def m(baseline, candidate, *, ci, p, se=0.01, n=100, hib=True, note=None):
    out = {"baseline": baseline, "candidate": candidate, "delta": candidate - baseline, "higher_is_better": hib,
           "n": n, "ci": ci, "p_value": p, "se": se}
    if note:
        out["stats_note"] = note
    return out


def one(rule: Rule, metric: dict, **settings) -> object:
    (r,) = evaluate(Thresholds([rule], **settings), {"t/x": metric}, {"t": "target"})
    return r


IMPROVES = Rule("min_delta", 0.02, metric="t/x", significant=True)
NO_DROP = Rule("max_drop", 0.02, metric="t/x", significant=True)


# ----------------------------------------------------------------------------- min_delta + significant


def test_demonstrated_improvement_passes():
    r = one(IMPROVES, m(0.50, 0.56, ci=[0.03, 0.09], p=0.001))
    assert r.status == "pass" and r.significant is True and r.ci == (0.03, 0.09)
    assert "demonstrated" in r.message


def test_improvement_whose_ci_reaches_below_the_limit_fails_even_when_significant():
    r = one(IMPROVES, m(0.50, 0.56, ci=[0.01, 0.09], p=0.001))
    assert r.status == "fail" and "CI lower bound +0.01" in r.message


def test_improvement_that_is_not_significant_fails():
    r = one(Rule("min_delta", 0.0, metric="t/x", significant=True), m(0.50, 0.52, ci=[0.001, 0.04], p=0.08))
    assert r.status == "fail" and r.significant is False and "not significant" in r.message


def test_plain_min_delta_ignores_significance():
    rule = Rule("min_delta", 0.02, metric="t/x")
    assert one(rule, m(0.50, 0.53, ci=[-0.02, 0.08], p=0.4)).status == "pass"


def test_non_inferiority_needs_only_the_ci():
    # min_delta -0.01: "at most one point worse", shown by the CI; a difference need not be significant
    rule = Rule("min_delta", -0.01, metric="t/x", significant=True)
    assert one(rule, m(0.50, 0.50, ci=[-0.005, 0.005], p=1.0)).status == "pass"
    assert one(rule, m(0.50, 0.50, ci=[-0.02, 0.02], p=1.0)).status == "fail"


def test_relative_improvement_ci_is_in_fractions_of_the_baseline():
    rule = Rule("min_delta", 0.05, metric="t/x", relative=True, significant=True)
    r = one(rule, m(0.40, 0.46, ci=[0.024, 0.096], p=0.001))
    assert r.ci == pytest.approx((0.06, 0.24)) and r.status == "pass"
    r = one(rule, m(0.40, 0.46, ci=[0.012, 0.096], p=0.001))
    assert r.ci[0] == pytest.approx(0.03) and r.status == "fail"


def test_lower_is_better_metric_flips_the_ci():
    rule = Rule("min_delta", 10.0, metric="t/x", significant=True)  # at least 10 ms faster
    r = one(rule, m(200.0, 180.0, ci=[-30.0, -12.0], p=0.001, hib=False))
    assert r.ci == (12.0, 30.0) and r.status == "pass"


# ----------------------------------------------------------------------------- max_drop + significant


def test_significant_drop_beyond_the_limit_blocks():
    r = one(NO_DROP, m(0.80, 0.70, ci=[-0.14, -0.06], p=0.0004))
    assert r.status == "fail" and r.significant is True and r.ci == pytest.approx((0.06, 0.14))


def test_drop_beyond_the_limit_that_is_not_significant_warns_without_blocking():
    r = one(NO_DROP, m(0.80, 0.77, ci=[-0.08, 0.02], p=0.3))
    assert r.status == "warn" and r.significant is False and "not blocking" in r.message
    _, verdict, _ = judge(Thresholds([NO_DROP]), {"t/x": m(0.80, 0.77, ci=[-0.08, 0.02], p=0.3)},
                          {"t": {"group": "target"}}, [])
    assert verdict == "pass"


def test_drop_within_the_limit_passes_even_when_significant():
    assert one(NO_DROP, m(0.80, 0.79, ci=[-0.015, -0.005], p=0.001)).status == "pass"


def test_plain_max_drop_blocks_on_noise():
    # the behaviour significance-aware rules exist to fix: a noisy drop beyond the limit blocks
    rule = Rule("max_drop", 0.02, metric="t/x")
    assert one(rule, m(0.80, 0.77, ci=[-0.08, 0.02], p=0.3)).status == "fail"


def test_warn_severity_never_blocks():
    rule = Rule("max_drop", 0.02, metric="t/x", significant=True, severity="warn")
    assert one(rule, m(0.80, 0.70, ci=[-0.14, -0.06], p=0.0004)).status == "warn"


# ----------------------------------------------------------------------------- missing statistics


@pytest.mark.parametrize("rule", [IMPROVES, NO_DROP])
def test_significance_without_statistics_is_an_error_never_a_pass(rule):
    metric = m(0.5, 0.4 if rule is NO_DROP else 0.6, ci=None, p=None, se=None, n=5,
               note="5 examples; at least 10 are needed to bootstrap")
    r = one(rule, metric)
    assert r.status == "error" and "at least 10 are needed" in r.message
    optional = dataclasses.replace(rule, optional=True)
    assert one(optional, metric).status == "skipped"


def test_results_without_statistics_fields_are_an_error_for_significance_rules():
    metric = {"baseline": 0.5, "candidate": 0.6, "delta": 0.1, "higher_is_better": True, "n": 50}
    assert one(IMPROVES, metric).status == "error"
    assert one(Rule("min_delta", 0.02, metric="t/x"), metric).status == "pass"


def test_relative_rule_from_a_zero_baseline_decides_on_the_p_value():
    rule = Rule("min_delta", 0.05, metric="t/x", relative=True, significant=True)
    assert one(rule, m(0.0, 0.2, ci=[0.1, 0.3], p=0.001)).status == "pass"
    assert one(rule, m(0.0, 0.2, ci=[-0.1, 0.3], p=0.3)).status == "fail"


# ----------------------------------------------------------------------------- alpha and Holm


def test_alpha_from_the_thresholds_file():
    metric = m(0.80, 0.70, ci=[-0.14, -0.06], p=0.03)
    assert one(NO_DROP, metric).status == "fail"
    assert one(NO_DROP, metric, alpha=0.01).status == "warn"


def test_holm_matches_statsmodels_and_changes_the_decision():
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    ps = [0.01, 0.04, 0.03, 0.005, 0.2]
    metrics = {f"t/m{i}": m(0.8, 0.7, ci=[-0.14, -0.06], p=p) for i, p in enumerate(ps)}
    rules = [Rule("max_drop", 0.02, metric="t/*", significant=True)]
    plain = evaluate(Thresholds(rules), metrics, {"t": "target"})
    holm = evaluate(Thresholds(rules, holm=True), metrics, {"t": "target"})
    reject, expected, _, _ = multipletests(ps, alpha=0.05, method="holm")
    assert [r.p_adjusted for r in holm] == pytest.approx(list(expected))
    assert [r.status == "fail" for r in holm] == list(reject)
    assert [r.status for r in plain] == ["fail", "fail", "fail", "fail", "warn"]
    assert [r.p_adjusted for r in plain] == ps


def test_holm_family_is_the_significance_checks_of_blocking_rules_only():
    metrics = {"t/a": m(0.8, 0.7, ci=[-0.14, -0.06], p=0.02), "t/b": m(0.8, 0.7, ci=[-0.14, -0.06], p=0.02)}
    rules = [Rule("max_drop", 0.02, metric="t/a", significant=True),
             Rule("max_drop", 0.02, metric="t/b", significant=True, severity="warn"),
             Rule("max_drop", 0.02, metric="t/b")]
    a, b_warn, b_plain = evaluate(Thresholds(rules, holm=True), metrics, {})
    assert a.p_adjusted == 0.02 and a.status == "fail"  # a family of one
    assert b_warn.status == "warn" and b_plain.status == "fail"


# ----------------------------------------------------------------------------- sample size


def test_mde_and_examples_needed_agree_with_gate_stats_on_a_mean():
    rng = np.random.default_rng(5)
    b = rng.integers(0, 2, 50).astype(float)
    c = np.where(rng.random(50) < 0.2, 1 - b, b)
    st = paired_mean_delta(b, c, resamples=500)
    metric = {"baseline": b.mean(), "candidate": c.mean(), "delta": st.delta, "higher_is_better": True,
              "n": 50, "ci": list(st.ci), "p_value": st.p_value, "se": st.se}
    r = one(Rule("max_drop", 0.05, metric="t/x"), metric)
    assert r.mde == pytest.approx(min_detectable_effect(c - b))
    assert r.examples_needed == examples_needed(c - b, 0.05)
    assert r.warning == (f"n = 50 cannot detect a 0.05 drop of t/x (the smallest detectable at alpha 0.05 and "
                         f"80% power is {r.mde:.4g}); about {r.examples_needed:,} examples needed")


def test_relative_rule_warning_speaks_in_percent():
    r = one(Rule("max_drop", 0.05, metric="t/x", relative=True), m(0.5, 0.5, ci=[-0.05, 0.05], p=1.0, se=0.02, n=50))
    z = 1.959963984540054 + 0.8416212335729143
    assert r.mde == pytest.approx(z * 0.02 / 0.5)
    assert r.examples_needed == math.ceil(50 * (r.mde / 0.05) ** 2)
    assert r.warning.startswith("n = 50 cannot detect a 5% drop of t/x") and "11.21%" in r.warning


def test_no_warning_when_the_sample_is_large_enough():
    r = one(Rule("max_drop", 0.05, metric="t/x"), m(0.5, 0.5, ci=[-0.01, 0.01], p=1.0, se=0.005, n=2000))
    assert r.warning is None and r.mde < 0.05 and r.examples_needed < 2000


def test_power_setting_changes_the_mde():
    metric = m(0.5, 0.5, ci=[-0.01, 0.01], p=1.0, se=0.01)
    low = one(Rule("max_drop", 0.05, metric="t/x"), metric, power=0.5)
    high = one(Rule("max_drop", 0.05, metric="t/x"), metric, power=0.9)
    assert low.mde == pytest.approx(1.959963984540054 * 0.01) and high.mde > low.mde


# ----------------------------------------------------------------------------- the file


def test_thresholds_file_reads_alpha_power_holm_and_significant(tmp_path):
    p = tmp_path / "t.json"
    p.write_text('{"version": 1, "alpha": 0.01, "power": 0.9, "holm": true, "rules": ['
                 '{"metric": "a/b", "max_drop": 0.02, "significant": true}]}', encoding="utf-8")
    th = load_thresholds(p)
    assert (th.alpha, th.power, th.holm) == (0.01, 0.9, True) and th.rules[0].significant


@pytest.mark.parametrize("body, expected", [
    ('{"metric": "a/b", "min": 0.5, "significant": true}', "'significant' applies only to"),
    ('{"metric": "a/b", "max_drop": 0.5, "significant": "yes"}', "boolean"),
])
def test_significant_on_the_wrong_rule_is_bad_input(tmp_path, body, expected):
    p = tmp_path / "t.json"
    p.write_text('{"version": 1, "rules": [' + body + ']}', encoding="utf-8")
    with pytest.raises(BadInput, match=expected):
        load_thresholds(p)


@pytest.mark.parametrize("setting", ['"alpha": 0', '"alpha": 0.7', '"power": 1', '"holm": "yes"'])
def test_bad_settings_are_bad_input(tmp_path, setting):
    p = tmp_path / "t.json"
    p.write_text('{"version": 1, ' + setting + ', "rules": [{"metric": "a/b", "min": 0}]}', encoding="utf-8")
    with pytest.raises(BadInput):
        load_thresholds(p)


def test_small_sample_with_an_exact_p_value_but_no_ci():
    note = "8 examples; at least 10 are needed to bootstrap a CI"
    # not significant: the improvement is not demonstrated, whatever the CI would say
    r = one(IMPROVES, m(0.5, 0.75, ci=None, p=0.25, n=8, note=note))
    assert r.status == "fail" and "not significant" in r.message
    # significant, but the size of the improvement cannot be checked without a CI
    r = one(IMPROVES, m(0.0, 1.0, ci=None, p=0.008, n=8, note=note))
    assert r.status == "error" and note in r.message
    # a drop within the limit passes without any evidence; one beyond it is decided by the exact p-value
    assert one(NO_DROP, m(0.5, 0.5, ci=None, p=None, n=8, note=note)).status == "pass"
    assert one(NO_DROP, m(0.5, 0.25, ci=None, p=0.5, n=8, note=note)).status == "warn"
    assert one(NO_DROP, m(1.0, 0.0, ci=None, p=0.008, n=8, note=note)).status == "fail"


@pytest.mark.parametrize("n", [3, 5])
def test_a_significance_rule_that_no_outcome_could_satisfy_is_an_error_not_a_warning(n):
    # every example went from 1 to 0, but on n <= 5 examples the smallest possible p is 2 / 2**n >= 0.05
    r = one(NO_DROP, m(1.0, 0.0, ci=None, p=2 / 2**n, se=0.0, n=n))
    assert r.status == "error" and f"n = {n} is too few to decide on significance" in r.message
    assert one(IMPROVES, m(0.0, 1.0, ci=None, p=2 / 2**n, se=0.0, n=n)).status == "error"
    assert one(NO_DROP, m(1.0, 0.0, ci=None, p=2 / 2**6, se=0.0, n=6)).status == "fail"  # 0.031 can be < 0.05


def test_equal_differences_give_no_mde_claim():
    r = one(Rule("max_drop", 0.05, metric="t/x"), m(1.0, 0.9, ci=[-0.1, -0.1], p=0.001, se=0.0, n=40))
    assert r.mde is None and r.examples_needed is None and r.warning is None


def test_relative_non_inferiority_from_a_zero_baseline_passes_when_nothing_changed():
    rule = Rule("min_delta", -0.05, metric="t/x", relative=True, significant=True)
    assert one(rule, m(0.0, 0.0, ci=[0.0, 0.0], p=1.0)).status == "pass"


def test_messages_round_p_down_like_the_report():
    r = one(NO_DROP, m(0.80, 0.70, ci=[-0.14, -0.06], p=0.04996))
    assert r.status == "fail" and "p = 0.049" in r.message


def test_holm_label_only_on_p_values_that_were_adjusted():
    metrics = {"t/a": m(0.8, 0.7, ci=[-0.14, -0.06], p=0.02)}
    warn_rule = Rule("max_drop", 0.02, metric="t/a", significant=True, severity="warn")
    (r,) = evaluate(Thresholds([warn_rule], holm=True), metrics, {})
    assert "Holm" not in r.message
    (r,) = evaluate(Thresholds([NO_DROP.__class__("max_drop", 0.02, metric="t/a", significant=True)], holm=True),
                    metrics, {})
    assert "(Holm-adjusted)" in r.message
