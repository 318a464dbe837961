"""Paired delta statistics against scipy, on real STS-B scores (no model: seeded per-example proxies)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from gate.metrics import mean_of
from gate.metrics.correlation import spearman
from gate.stats import DeltaStats, examples_needed, min_detectable_effect, paired_delta, paired_mean_delta

DATA = Path(__file__).resolve().parent.parent / "data" / "stsb-dev-400.jsonl"


def _spearman(a) -> float:
    return spearman(a["cosine"], a["gold"])


@pytest.fixture(scope="module")
def gold() -> np.ndarray:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    return np.array([r["score"] for r in rows], dtype=np.float64)


@pytest.fixture(scope="module")
def cosines(gold):
    """Two "models'" cosine proxies: the real gold score rescaled, plus each model's own seeded noise."""
    base = gold / 5.0 + np.random.default_rng(1).normal(0.0, 0.15, len(gold))
    cand = gold / 5.0 + np.random.default_rng(2).normal(0.0, 0.15, len(gold))
    return base, cand


@pytest.fixture(scope="module")
def correct(gold, cosines):
    """0/1 per-example outcomes: does each proxy put the pair on the right side of score 2.5?"""
    truth = gold > 2.5
    return tuple(((c > 0.5) == truth).astype(np.int64) for c in cosines)


def _regress(x: np.ndarray) -> np.ndarray:
    out = x.copy()
    out[::2] -= 0.2
    return out


# ----------------------------------------------------------------------------- null and clear effects


def test_identical_mean(cosines):
    b = cosines[0]
    s = paired_mean_delta(b, b.copy())
    assert s.delta == 0.0 and s.ci == (0.0, 0.0) and s.p_value == 1.0
    assert s.method == "sign-flip" and s.n == len(b) and s.reason is None


def test_identical_spearman(gold, cosines):
    arrays = {"cosine": cosines[0], "gold": gold}
    s = paired_delta(_spearman, arrays, dict(arrays), resamples=200)
    assert s.delta == 0.0 and s.ci == (0.0, 0.0) and s.p_value == 1.0 and s.method == "swap"


def test_clear_regression_mean(cosines):
    b = cosines[0]
    s = paired_mean_delta(b, _regress(b))
    assert s.delta == pytest.approx(-0.1)
    assert s.ci[1] < 0 and s.p_value < 0.01
    assert s.p_value == pytest.approx(1 / 2001)  # no flip reaches it: add-one smoothing


def test_clear_regression_spearman(gold, cosines):
    b = {"cosine": cosines[0], "gold": gold}
    c = {"cosine": _regress(cosines[0]), "gold": gold}
    s = paired_delta(_spearman, b, c, resamples=300)
    assert s.delta < 0 and s.ci[1] < 0 and s.p_value < 0.01


# ----------------------------------------------------------------------------- bootstrap CI vs scipy


def _close_ci(ours, theirs, share=0.1):
    width = theirs[1] - theirs[0]
    assert abs(ours[0] - theirs[0]) < share * width and abs(ours[1] - theirs[1]) < share * width


def test_mean_ci_matches_scipy(cosines):
    b, c = cosines
    ours = paired_mean_delta(b, c, resamples=4000, seed=3)
    ref = stats.bootstrap((b, c), lambda b, c, axis: np.mean(c, axis=axis) - np.mean(b, axis=axis),
                          paired=True, vectorized=True, method="percentile", n_resamples=4000,
                          random_state=np.random.default_rng(11)).confidence_interval
    _close_ci(ours.ci, (ref.low, ref.high))
    assert ours.ci[0] < ours.delta < ours.ci[1]


def test_spearman_ci_matches_scipy(gold, cosines):
    b, c = cosines
    ours = paired_delta(_spearman, {"cosine": b, "gold": gold}, {"cosine": c, "gold": gold},
                        resamples=1000, seed=3, permutation=False)
    assert ours.method == "bootstrap-only" and ours.p_value is None
    ref = stats.bootstrap((b, c, gold), lambda b, c, g: spearman(c, g) - spearman(b, g), paired=True,
                          vectorized=False, method="percentile", n_resamples=1000,
                          random_state=np.random.default_rng(11)).confidence_interval
    _close_ci(ours.ci, (ref.low, ref.high), share=0.15)


def test_mean_path_equals_general_path(cosines):
    """Same seed, same bootstrap draws: the vectorized mean and the black-box metric agree."""
    b, c = cosines[0][:60], cosines[1][:60] + 0.02
    fast = paired_mean_delta(b, c, resamples=500, seed=5)
    slow = paired_delta(mean_of("v"), {"v": b}, {"v": c}, resamples=500, seed=5, permutation=False)
    assert slow.delta == pytest.approx(fast.delta, abs=1e-15)
    assert slow.ci == pytest.approx(fast.ci, abs=1e-12)


# ----------------------------------------------------------------------------- permutation p-values vs scipy


def test_sign_flip_matches_scipy_monte_carlo(cosines):
    b, c = cosines  # a small real-noise difference: p in the middle range, where Monte-Carlo error shows
    ours = paired_mean_delta(b, c, resamples=5000, seed=4)
    ref = stats.permutation_test((c - b,), lambda d, axis: np.mean(d, axis=axis), vectorized=True,
                                 permutation_type="samples", n_resamples=5000,
                                 random_state=np.random.default_rng(12)).pvalue
    assert 0.1 < ref < 0.9
    assert ours.method == "sign-flip"
    assert abs(ours.p_value - ref) < 5 * np.sqrt(2 * ref * (1 - ref) / 5000) + 1e-3


def test_sign_flip_exact_equals_scipy(cosines):
    b, c = cosines[0][:14], cosines[1][:14]
    ours = paired_mean_delta(b, c)
    ref = stats.permutation_test((c - b,), lambda d, axis: np.mean(d, axis=axis), vectorized=True,
                                 permutation_type="samples", n_resamples=np.inf)
    assert ours.method == "sign-flip-exact"
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-12)


def test_swap_exact_equals_sign_flip_exact(cosines):
    """For a mean, swapping labels per example is flipping the sign of its difference."""
    b, c = cosines[0][:12], cosines[1][:12]
    general = paired_delta(mean_of("v"), {"v": b}, {"v": c}, resamples=2**12)
    assert general.method == "swap-exact"
    assert general.p_value == pytest.approx(paired_mean_delta(b, c).p_value, rel=1e-12)


def test_swap_test_spearman_no_real_difference(gold, cosines):
    """A Spearman delta between two equally noisy proxies is not significant."""
    b, c = cosines
    s = paired_delta(_spearman, {"cosine": b, "gold": gold}, {"cosine": c, "gold": gold}, resamples=300)
    assert s.method == "swap" and s.p_value > 0.05 and s.ci[0] < 0 < s.ci[1]


def test_mcnemar_exact_equals_binomtest(correct):
    b, c = correct
    s = paired_mean_delta(b, c)
    only_c = int(np.sum((c == 1) & (b == 0)))
    only_b = int(np.sum((c == 0) & (b == 1)))
    assert only_c + only_b > 0
    assert s.method == "mcnemar-exact"
    assert s.p_value == stats.binomtest(only_c, only_c + only_b, 0.5).pvalue
    assert s.delta == pytest.approx((only_c - only_b) / len(b))
    forced = paired_mean_delta(b, c, binary=False)
    assert forced.method == "sign-flip" and forced.ci == s.ci


def test_mcnemar_no_discordant_pairs(correct):
    s = paired_mean_delta(correct[0], correct[0].copy())
    assert s.p_value == 1.0 and s.ci == (0.0, 0.0)


# ----------------------------------------------------------------------------- reproducibility and edge cases


def test_same_seed_bit_identical_other_seed_close(gold, cosines):
    b, c = cosines
    one, again, other = (paired_mean_delta(b, c, seed=s) for s in (7, 7, 8))
    assert one == again
    assert one != other
    width = one.ci[1] - one.ci[0]
    assert abs(one.ci[0] - other.ci[0]) < 0.1 * width and abs(one.ci[1] - other.ci[1]) < 0.1 * width
    assert abs(one.p_value - other.p_value) < 0.05

    arrays_b, arrays_c = {"cosine": b, "gold": gold}, {"cosine": c, "gold": gold}
    r1 = paired_delta(_spearman, arrays_b, arrays_c, resamples=100, seed=7)
    r2 = paired_delta(_spearman, arrays_b, arrays_c, resamples=100, seed=7)
    assert r1 == r2


def test_too_few_examples_no_ci_but_the_exact_tests(gold, cosines, correct):
    b, c = cosines[0][:5], cosines[1][:5]
    s = paired_mean_delta(b, c)
    assert s.ci is None and "5 examples; at least 10 are needed to bootstrap a CI" == s.reason
    assert s.delta == pytest.approx(np.mean(c - b))
    # the sign-flip test is exact at n = 5: all 32 flips, the same as scipy's exact permutation test
    ref = stats.permutation_test((b, c), lambda x, y, axis=-1: np.mean(y - x, axis=axis), vectorized=True,
                                 permutation_type="samples", n_resamples=np.inf)
    assert s.method == "sign-flip-exact" and s.p_value == pytest.approx(ref.pvalue)
    g = paired_delta(_spearman, {"cosine": b, "gold": gold[:5]}, {"cosine": c, "gold": gold[:5]}, resamples=100)
    assert g.ci is None and "5 examples" in g.reason and g.n == 5 and g.method == "swap-exact"
    assert 0.0 < g.p_value <= 1.0
    bb, cc = correct[0][:6].astype(float), correct[1][:6].astype(float)
    m = paired_mean_delta(bb, cc)
    assert m.ci is None and m.method == "mcnemar-exact"
    assert paired_mean_delta(np.array([]), np.array([])).p_value is None


def test_mostly_undefined_resamples_give_no_ci(cosines):
    """One positive gold among 20: about a third of resamples miss it and the correlation is undefined."""
    n = 20
    g = (np.arange(n) == 0).astype(float)
    s = paired_delta(_spearman, {"cosine": cosines[0][:n], "gold": g}, {"cosine": cosines[1][:n], "gold": g},
                     resamples=200)
    assert s.ci is None and "undefined" in s.reason
    assert s.p_value is not None  # swapping never makes gold constant


def test_generation_shaped_arrays(cosines):
    """(n_cases, n_samples) arrays: resampled and swapped by case, all samples together."""
    b = cosines[0][:200].reshape(50, 4)
    c = cosines[1][:200].reshape(50, 4)
    metric = lambda a: float(np.mean(a["v"]))  # noqa: E731
    general = paired_delta(metric, {"v": b}, {"v": c}, resamples=300, seed=2)
    fast = paired_mean_delta(b, c, resamples=300, seed=2)
    assert general.delta == pytest.approx(fast.delta)
    assert general.ci == pytest.approx(fast.ci, abs=1e-12)


def test_misaligned_inputs_raise(cosines):
    with pytest.raises(ValueError):
        paired_delta(mean_of("v"), {"v": cosines[0]}, {"v": cosines[1][:-1]})
    with pytest.raises(ValueError):
        paired_delta(mean_of("v"), {"v": cosines[0]}, {"w": cosines[1]})
    with pytest.raises(ValueError):
        paired_mean_delta(cosines[0], cosines[1][:-1])


# ----------------------------------------------------------------------------- power


def test_min_detectable_effect_by_hand(cosines):
    d = cosines[1] - cosines[0]
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert min_detectable_effect(d) == pytest.approx(z * np.std(d, ddof=1) / np.sqrt(len(d)), rel=1e-12)
    z90 = stats.norm.ppf(0.995) + stats.norm.ppf(0.9)
    assert min_detectable_effect(d, alpha=0.01, power=0.9) == pytest.approx(
        z90 * np.std(d, ddof=1) / np.sqrt(len(d)), rel=1e-12)


def test_examples_needed_inverts_mde(cosines):
    d = cosines[1] - cosines[0]
    assert examples_needed(d, min_detectable_effect(d)) == len(d)
    assert examples_needed(d, min_detectable_effect(d) / 2) in (4 * len(d), 4 * len(d) + 1)
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert examples_needed(d, 0.01) == int(np.ceil((z * np.std(d, ddof=1) / 0.01) ** 2))
    assert isinstance(DeltaStats(0.0, None, None, "none", 0), DeltaStats)
