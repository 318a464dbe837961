"""gate.compare: which paired method each metric gets, seeds, and unavailable statistics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gate.compare import MIN_EXAMPLES, compare_metric, metric_seed
from gate.metrics import MetricDef, mean_of
from gate.metrics.correlation import spearman
from gate.scorers import case_mean
from gate.stats import paired_delta, paired_mean_delta
from gate.tasks.generative import percentile, sliced

DATA = Path(__file__).resolve().parent.parent / "data" / "stsb-dev-400.jsonl"


@pytest.fixture(scope="module")
def gold() -> np.ndarray:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    return np.array([r["score"] for r in rows], dtype=np.float64)


@pytest.fixture(scope="module")
def roles(gold):
    """Two seeded proxies of real STS-B scores, and 0/1 outcomes derived from them."""
    b = gold / 5.0 + np.random.default_rng(1).normal(0.0, 0.15, len(gold))
    c = gold / 5.0 + np.random.default_rng(2).normal(0.0, 0.15, len(gold))
    truth = gold > 2.5
    return ({"cosine": b, "gold": gold, "ok": ((b > 0.5) == truth).astype(float)},
            {"cosine": c, "gold": gold, "ok": ((c > 0.5) == truth).astype(float)})


def test_mean_metric_uses_the_vectorized_paired_test(roles):
    b, c = roles
    m = MetricDef("acc", True, mean_of("ok"))
    got = compare_metric(m, "t/acc", b, c, seed=3, resamples=500)
    ref = paired_mean_delta(b["ok"], c["ok"], seed=metric_seed(3, "t/acc"), resamples=500)
    assert got["test"] == "mcnemar-exact"
    assert got["ci"] == list(ref.ci) and got["p_value"] == ref.p_value and got["se"] == ref.se
    assert got["n_paired"] == len(b["ok"]) and "stats_note" not in got


def test_correlation_resamples_pairs_and_recomputes(roles):
    b, c = roles
    m = MetricDef("spearman", True, lambda a: spearman(a["cosine"], a["gold"]))
    got = compare_metric(m, "t/spearman", b, c, seed=0, resamples=300)
    ref = paired_delta(m.compute, b, c, seed=metric_seed(0, "t/spearman"), resamples=300)
    assert got["test"] == "swap" and got["ci"] == list(ref.ci) and got["p_value"] == ref.p_value
    assert got["se"] == pytest.approx(ref.se) and got["se"] > 0


def test_same_seed_reproduces_to_the_last_digit_and_metrics_get_their_own_streams(roles):
    b, c = roles
    m = MetricDef("cos", True, mean_of("cosine"))
    first = compare_metric(m, "t/cos", b, c, seed=7, resamples=400)
    assert compare_metric(m, "t/cos", b, c, seed=7, resamples=400) == first
    assert compare_metric(m, "t/cos", b, c, seed=8, resamples=400)["ci"] != first["ci"]
    assert compare_metric(m, "other/cos", b, c, seed=7, resamples=400)["ci"] != first["ci"]
    assert metric_seed(7, "t/cos") == metric_seed(7, "t/cos") != metric_seed(7, "t/cos2")


def test_identical_models_ci_is_zero_and_p_is_one(roles):
    b, _ = roles
    for m in (MetricDef("acc", True, mean_of("ok")), MetricDef("cos", True, mean_of("cosine")),
              MetricDef("s", True, lambda a: spearman(a["cosine"], a["gold"]))):
        got = compare_metric(m, f"t/{m.name}", b, {k: v.copy() for k, v in b.items()}, resamples=200)
        assert got["ci"] == [0.0, 0.0] and got["p_value"] == 1.0, m.name


def test_too_few_examples_give_no_ci_with_the_reason_but_an_exact_p_value(roles):
    b, c = ({k: v[: MIN_EXAMPLES - 1] for k, v in r.items()} for r in roles)
    got = compare_metric(MetricDef("cos", True, mean_of("cosine")), "t/cos", b, c)
    assert got["ci"] is None and got["test"] == "sign-flip-exact" and 0 < got["p_value"] <= 1
    assert f"at least {MIN_EXAMPLES} are needed to bootstrap a CI" in got["stats_note"]


def test_case_mean_skips_cases_without_a_value_in_both_roles():
    rng = np.random.default_rng(0)
    b = rng.integers(0, 2, (40, 1)).astype(float)
    c = rng.integers(0, 2, (40, 1)).astype(float)
    b[::4] = c[::4] = np.nan  # the cases a scorer does not apply to (no schema)
    m = MetricDef("schema", True, case_mean("v"))
    got = compare_metric(m, "t/schema", {"v": b}, {"v": c}, resamples=300)
    keep = ~np.isnan(b[:, 0])
    ref = paired_mean_delta(b[keep, 0], c[keep, 0], seed=metric_seed(0, "t/schema"), resamples=300)
    assert got["n_paired"] == 30 and got["ci"] == list(ref.ci) and got["p_value"] == ref.p_value


def test_values_missing_on_different_cases_fall_back_to_the_general_method():
    rng = np.random.default_rng(1)
    b = rng.random((30, 1))
    c = rng.random((30, 1))
    b[0] = np.nan  # only the baseline lacks a value here
    m = MetricDef("args", True, case_mean("v"))
    got = compare_metric(m, "t/args", {"v": b}, {"v": c}, resamples=200)
    assert got["test"] in ("swap", "swap-exact") and got["n_paired"] == 29 and got["ci"] is not None


def test_category_slice_of_a_mean_stays_vectorized():
    rng = np.random.default_rng(2)
    n = 60
    cat = np.repeat([0, 1], n // 2)
    b = {"pass": rng.integers(0, 2, n).astype(float), "category": cat}
    c = {"pass": rng.integers(0, 2, n).astype(float), "category": cat}
    sl = sliced(MetricDef("pass_rate", True, mean_of("pass")), 1, "adversarial")
    assert sl.mean is not None
    got = compare_metric(sl, "t/pass_rate[adversarial]", b, c, resamples=300)
    ref = paired_mean_delta(b["pass"][cat == 1], c["pass"][cat == 1],
                            seed=metric_seed(0, "t/pass_rate[adversarial]"), resamples=300)
    assert got["n_paired"] == n // 2 and got["ci"] == list(ref.ci) and got["p_value"] == ref.p_value


def test_percentile_metric_over_samples_is_compared_per_case():
    rng = np.random.default_rng(3)
    b = {"latency_ms": rng.gamma(2.0, 50.0, (50, 3))}
    c = {"latency_ms": rng.gamma(2.0, 50.0, (50, 3)) * 2}  # twice as slow
    m = MetricDef("latency_p99_ms", False, percentile("latency_ms", 99))
    got = compare_metric(m, "t/latency_p99_ms", b, c, resamples=300)
    assert got["test"] == "swap" and got["ci"][0] > 0 and got["p_value"] < 0.05


def test_arrays_only_one_model_has_are_left_out_and_a_metric_that_needs_them_has_no_ci():
    rng = np.random.default_rng(4)
    b = {"latency_ms": rng.random((20, 1)), "cost_usd": rng.random((20, 1))}
    c = {"latency_ms": rng.random((20, 1))}  # the candidate has no declared price
    cost = MetricDef("cost_usd", False, lambda a: float(np.sum(a["cost_usd"])) if "cost_usd" in a else float("nan"))
    got = compare_metric(cost, "t/cost_usd", b, c, resamples=100)
    assert got["ci"] is None and got["stats_note"]
    lat = compare_metric(MetricDef("p50", False, percentile("latency_ms", 50)), "t/p50", b, c, resamples=100)
    assert lat["ci"] is not None


def _batched_metrics():
    from gate.tasks.generative import usage_metrics
    from gate.tasks.perplexity import METRICS as ppl
    from gate.tasks.sts import METRICS as sts

    return [*sts, *usage_metrics(), *ppl]


@pytest.mark.parametrize("metric", _batched_metrics(), ids=lambda m: m.name)
def test_batched_metrics_give_the_loops_numbers(metric, roles):
    rng = np.random.default_rng(11)
    n = 40
    b, c = roles
    b = {"cosine": b["cosine"][:n], "gold": b["gold"][:n], "latency_ms": rng.gamma(2, 50, (n, 2)),
         "prompt_tokens": rng.integers(5, 50, (n, 2)).astype(float), "completion_tokens": np.ones((n, 2)),
         "cost_usd": rng.random((n, 2)), "nll": rng.random(n) * 30, "tokens": rng.integers(5, 30, n).astype(float)}
    c = {**{k: v * rng.uniform(0.8, 1.2, v.shape) for k, v in b.items()}, "gold": b["gold"]}
    assert metric.batch is not None
    for row in range(3):  # the batch form of one row is the metric itself
        idx = rng.integers(0, n, n)
        one = metric.compute({k: v[idx] for k, v in c.items()})
        assert metric.batch({k: v[idx][None] for k, v in c.items()})[0] == pytest.approx(one, rel=1e-12)
    fast = paired_delta(metric.compute, b, c, resamples=300, seed=5, batch=metric.batch)
    slow = paired_delta(metric.compute, b, c, resamples=300, seed=5)
    assert fast.ci == pytest.approx(slow.ci, rel=1e-9) and fast.p_value == slow.p_value
    assert fast.se == pytest.approx(slow.se, rel=1e-9)
    small = {k: v[:6] for k, v in b.items()}, {k: v[:6] for k, v in c.items()}  # the exact small-n swap test
    assert paired_delta(metric.compute, *small, batch=metric.batch).p_value == \
        paired_delta(metric.compute, *small).p_value


def test_batched_correlation_is_nan_on_a_constant_resample():
    from gate.metrics.correlation import pearson_rows, spearman_rows

    x = np.array([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0]])
    y = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    assert np.isnan(spearman_rows(x, y)[0]) and spearman_rows(x, y)[1] == pytest.approx(-1.0)
    assert np.isnan(pearson_rows(x[:, :1], y[:, :1])).all()
