"""gate.human without the CLI: kappa against reference implementations, the batch plan, decoding, metrics.

Kappa is checked against statsmodels (``fleiss_kappa``, ``cohens_kappa``) and scikit-learn on
textbook tables and on many random rating matrices, not only against our own arithmetic.
"""

from __future__ import annotations

import csv
import io
import math
import warnings

import numpy as np
import pytest

from gate.errors import BadInput, BadInputs
from gate.human import (COLUMNS, SCORE, Item, Rating, _cell, cohen_kappa, fleiss_kappa, human_metrics,
                        plan_batch, read_ratings, render_answer)

inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")
LABELS = list(SCORE)  # candidate, tie, baseline


# --- Fleiss' kappa ------------------------------------------------------------------------------


def test_fleiss_kappa_of_the_textbook_table():
    """Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories, kappa 0.210."""
    table = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                      [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=5e-5)
    assert fleiss_kappa(table) == pytest.approx(inter_rater.fleiss_kappa(table, method="fleiss"), abs=1e-12)


@pytest.mark.parametrize("seed", range(25))
def test_fleiss_kappa_matches_statsmodels_on_random_ratings(seed):
    rng = np.random.default_rng(seed)
    raters, items = int(rng.integers(3, 8)), int(rng.integers(5, 60))
    # raters who share a per-item tendency, so kappa spans poor to good agreement across seeds
    tendency = rng.dirichlet(np.full(3, rng.uniform(0.2, 3.0)), size=items)
    labels = np.array([[rng.choice(3, p=tendency[i]) for _ in range(raters)] for i in range(items)])
    table, _ = inter_rater.aggregate_raters(labels, n_cat=3)
    expected = inter_rater.fleiss_kappa(table, method="fleiss")
    if math.isnan(expected):
        assert math.isnan(fleiss_kappa(table))
    else:
        assert fleiss_kappa(table) == pytest.approx(expected, abs=1e-12)


def test_fleiss_kappa_perfect_agreement_and_undefined():
    assert fleiss_kappa(np.array([[3, 0, 0], [0, 3, 0], [0, 0, 3]])) == pytest.approx(1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division-by-zero warning: undefined is said with NaN
        assert math.isnan(fleiss_kappa(np.array([[4, 0, 0], [4, 0, 0]])))


def test_fleiss_kappa_refuses_unequal_raters_per_item():
    with pytest.raises(ValueError):
        fleiss_kappa(np.array([[3, 0, 0], [1, 1, 0]]))


# --- Cohen's kappa ------------------------------------------------------------------------------


def test_cohen_kappa_by_hand():
    """10 items: observed agreement 0.7; marginals (5, 2, 3) and (4, 3, 3) -> chance 0.35; kappa 0.35 / 0.65."""
    first = ["candidate"] * 5 + ["tie"] * 2 + ["baseline"] * 3
    second = ["candidate", "candidate", "candidate", "candidate", "tie", "tie", "baseline", "baseline", "baseline",
              "tie"]
    po = sum(a == b for a, b in zip(first, second)) / 10
    pe = sum(first.count(x) * second.count(x) for x in LABELS) / 100
    assert (po, pe) == (0.7, pytest.approx(0.35))
    assert cohen_kappa(first, second, LABELS) == pytest.approx((0.7 - 0.35) / (1 - 0.35))


@pytest.mark.parametrize("seed", range(25))
def test_cohen_kappa_matches_statsmodels_on_random_ratings(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(4, 80))
    first = rng.choice(3, size=n, p=rng.dirichlet(np.ones(3)))
    agree = rng.random(n) < rng.uniform(0, 1)
    second = np.where(agree, first, rng.choice(3, size=n))
    a, b = [LABELS[i] for i in first], [LABELS[i] for i in second]
    table = np.array([[np.sum((first == i) & (second == j)) for j in range(3)] for i in range(3)])
    expected = inter_rater.cohens_kappa(table, return_results=False)
    if math.isclose(sum(a.count(x) * b.count(x) for x in LABELS) / n**2, 1.0):
        assert math.isnan(cohen_kappa(a, b, LABELS))
    else:
        assert cohen_kappa(a, b, LABELS) == pytest.approx(expected, abs=1e-12)


def test_cohen_kappa_edge_cases_never_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(cohen_kappa(["tie"] * 5, ["tie"] * 5, LABELS))  # chance agreement 1: undefined
        assert cohen_kappa(["candidate"] * 5, ["baseline"] * 5, LABELS) == 0.0  # never agree, never by chance
        assert cohen_kappa(["candidate", "tie"], ["candidate", "tie"], LABELS) == 1.0


# --- the batch plan -----------------------------------------------------------------------------


def items(n: int) -> list[Item]:
    return [Item("tools" if i % 2 else "intent", f"ex-{i}", f"Question {i}?",
                 {"baseline": f"old answer {i}", "candidate": f"new answer {i}"}) for i in range(n)]


def plan(n=50, **kw):
    args = dict(raters=3, overlap=10, max_items=None, seed=0, results_sha256="0" * 64, suite="s")
    args.update(kw)
    return plan_batch(items(n), **args)


def test_plan_shares_the_overlap_and_splits_the_rest():
    key, rows = plan(50, raters=3, overlap=10)
    overlap = set(key["overlap"])
    assert len(overlap) == 10
    per_rater = {r: set(v) for r, v in key["raters"].items()}
    assert list(per_rater) == ["1", "2", "3"]
    assert all(overlap <= ids for ids in per_rater.values())
    own = [ids - overlap for ids in per_rater.values()]
    assert sorted(len(o) for o in own) == [13, 13, 14]  # 40 others split as evenly as possible
    assert set().union(*own) == set(key["items"]) - overlap and sum(len(o) for o in own) == 40
    for r, ids in key["raters"].items():
        assert [row[2] for row in rows[r]] == ids  # the CSV follows the key's order for that rater


def test_plan_defaults_overlap_and_one_rater_has_none():
    key, _ = plan(50, raters=2, overlap=None)
    assert len(key["overlap"]) == 20
    key, _ = plan(7, raters=2, overlap=None)
    assert len(key["overlap"]) == 7
    key, _ = plan(12, raters=1, overlap=None)
    assert key["overlap"] == [] and len(key["raters"]["1"]) == 12
    with pytest.raises(BadInput, match="at least 2 raters"):
        plan(12, raters=1, overlap=3)
    with pytest.raises(BadInput, match="more than the 12 items"):
        plan(12, raters=2, overlap=13)


def test_plan_is_blind_balanced_and_shuffled():
    key, rows = plan(60, raters=2, overlap=20)
    a_is_candidate = [v["a"] == "candidate" for v in key["items"].values()]
    assert sum(a_is_candidate) == 30  # exactly half
    ids = list(key["items"])
    assert ids == [f"h{i:04d}" for i in range(1, 61)]
    # ids follow neither the examples' order nor the tasks
    assert [key["items"][i]["example"] for i in ids] != [f"ex-{i}" for i in range(60)]
    # each rater sees the shared items in their own order
    first, second = ([i for i in key["raters"][r] if i in key["overlap"]] for r in ("1", "2"))
    assert sorted(first) == sorted(second) and first != second
    text = "".join(",".join(r) for rs in rows.values() for r in rs)
    for word in ("baseline", "candidate", "tools", "intent", "ex-"):
        assert word not in text
    for r, rs in rows.items():
        for row in rs:
            info = key["items"][row[2]]
            n = info["example"].split("-")[1]
            assert row[4] == f"{'new' if info['a'] == 'candidate' else 'old'} answer {n}"
            assert row[5] == f"{'old' if info['a'] == 'candidate' else 'new'} answer {n}"
            assert row[6] == row[7] == ""


def test_plan_is_reproducible_and_seeded():
    assert plan(40) == plan(40)
    assert plan(40, seed=1)[0]["items"] != plan(40)[0]["items"]
    assert plan(40, seed=1)[0]["batch"] != plan(40)[0]["batch"]
    # positions come from their own stream: more raters do not move any answer
    assert {k: v["a"] for k, v in plan(40, raters=2)[0]["items"].items()} == \
           {k: v["a"] for k, v in plan(40, raters=4)[0]["items"].items()}


def test_plan_samples_items():
    key, _ = plan(50, max_items=12, overlap=4)
    assert len(key["items"]) == 12
    assert len({v["example"] for v in key["items"].values()}) == 12
    assert plan(50, max_items=12, overlap=4) == plan(50, max_items=12, overlap=4)


# --- texts --------------------------------------------------------------------------------------


def test_answers_show_text_and_tool_calls_in_full():
    long = "x" * 5000
    assert render_answer({"answer": long}) == long
    assert render_answer({"answer": " Sure. ", "tool_calls": [{"name": "block_card", "arguments": {"b": 1, "a": "é"}},
                                                           {"name": "raw", "arguments": "{not json"}]}) == \
        'Sure.\n[tool call] block_card({"a": "é", "b": 1})\n[tool call] raw({not json)'
    assert render_answer({"answer": ""}) == "(empty answer)"


def test_cells_lose_nul_and_cannot_run_as_formulas():
    assert _cell("a\x00b") == "ab"
    for text in ("=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)"):
        assert _cell(text) == "'" + text
    assert _cell("fine = ok") == "fine = ok"


# --- decoding and metrics -----------------------------------------------------------------------


def rater_file(tmp_path, key, rater, pick, name=None):
    """A CSV as a rater returns it; ``pick(item_id, a_role) -> rating text``."""
    buf = io.StringIO(newline="")
    w = csv.writer(buf, quoting=csv.QUOTE_ALL)
    w.writerow(COLUMNS)
    for item in key["raters"][rater]:
        w.writerow([key["batch"], rater, item, "q", "x", "y", pick(item, key["items"][item]["a"]), ""])
    path = tmp_path / (name or f"rater-{rater}.csv")
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def test_a_rater_who_always_prefers_the_candidate_decodes_to_candidate(tmp_path):
    key, _ = plan(30, raters=1, overlap=None)
    path = rater_file(tmp_path, key, "1", lambda item, a: "A" if a == "candidate" else " b ")
    ratings = read_ratings(path, key)
    assert {r.label for r in ratings} == {"candidate"} and len(ratings) == 30
    m = human_metrics(ratings, None, seed=0, resamples=500, confidence=0.95)
    assert m["human/preference"]["candidate"] == 1.0 and m["human/preference"]["baseline"] == 0.0
    assert m["human/win_rate"]["candidate"] == 1.0 and m["human/loss_rate"]["baseline"] == 1.0
    # one rater, no ties: every item is a discordant 0/1 pair, the exact sign test
    assert m["human/preference"]["test"] == "mcnemar-exact"
    assert m["human/preference"]["p_value"] == pytest.approx(2 * 0.5**30)


def test_a_rater_always_choosing_a_is_no_preference(tmp_path):
    key, _ = plan(30, raters=1, overlap=None)
    ratings = read_ratings(rater_file(tmp_path, key, "1", lambda item, a: "a"), key)
    m = human_metrics(ratings, None, seed=0, resamples=500, confidence=0.95)
    assert m["human/preference"]["candidate"] == 0.5  # the balanced positions cancel a position habit


def test_preference_ci_maps_the_delta_ci(tmp_path):
    rng = np.random.default_rng(3)
    ratings = [Rating("1", f"h{i:04d}", LABELS[rng.choice(3, p=[0.6, 0.1, 0.3])], tmp_path, i) for i in range(40)]
    m = human_metrics(ratings, None, seed=7, resamples=1000, confidence=0.95)["human/preference"]
    s = np.array([SCORE[r.label] for r in ratings])
    assert m["candidate"] == pytest.approx(s.mean()) and m["delta"] == pytest.approx(2 * s.mean() - 1)
    lo, hi = m["ci"]
    assert m["candidate_ci"] == pytest.approx([(lo + 1) / 2, (hi + 1) / 2])
    assert lo < m["delta"] < hi
    assert m["se"] == pytest.approx(np.std(2 * s - 1, ddof=1) / math.sqrt(40))
    assert "stats_note" not in m


def test_too_few_items_have_no_ci_and_say_why_but_an_exact_p_value(tmp_path):
    ratings = [Rating("1", f"h{i}", "candidate", tmp_path, i) for i in range(6)]
    m = human_metrics(ratings, None, seed=0, resamples=500, confidence=0.95)["human/preference"]
    assert m["candidate"] == 1.0
    assert m["ci"] is None and m["candidate_ci"] is None
    assert m["stats_note"] == "6 examples; at least 10 are needed to bootstrap a CI"
    # all 6 items prefer the candidate (0/1 scores): the exact McNemar / sign test gives 2 / 2**6
    assert m["p_value"] == pytest.approx(2 / 64) and m["test"] == "mcnemar-exact"


def test_rater_file_problems_are_all_reported_with_lines(tmp_path):
    key, _ = plan(12, raters=1, overlap=None)
    answers = iter(["A", "", "maybe", "tie", "B"] + ["A"] * 20)
    path = rater_file(tmp_path, key, "1", lambda item, a: next(answers))
    with pytest.raises(BadInputs) as exc:
        read_ratings(path, key)
    problems = [str(p) for p in exc.value.problems]
    assert len(problems) == 2
    assert problems[0].startswith(f"{path}:3: row 3 (item {key['raters']['1'][1]}): missing rating")
    assert problems[1].startswith(f"{path}:4: row 4 (item {key['raters']['1'][2]}): rating 'maybe' is outside")
