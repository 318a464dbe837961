"""Unit tests for gate.scorers, checked against the reference libraries on real STS-B sentences."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer

from gate import scorers as S
from gate.cases import Case
from gate.llm import ChatResponse, ToolCall

DATA = Path(__file__).resolve().parent.parent / "data" / "stsb-dev-400.jsonl"
ROWS = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
ANSWERS = [r["sentence1"] for r in ROWS]
REFS = [r["sentence2"] for r in ROWS]

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
CLOCK = {"type": "function", "function": {"name": "get_time"}}


def case(expected: str | None = None, *, schema: dict | None = None, tools=(WEATHER, CLOCK),
         call: dict | None = None, expects: bool | None = None) -> Case:
    return Case(id="c", line=1, messages=({"role": "user", "content": "q"},), expected=expected, category=None,
                schema=schema, tools=tuple(tools) if tools is not None else None, expected_tool_call=call,
                expects_tool_call=(call is not None) if expects is None else expects)


def resp(text: str = "", calls: list[ToolCall] | None = None) -> ChatResponse:
    return ChatResponse(text=text, tool_calls=list(calls or []))


def metric(scorer: S.Scorer, name: str):
    return next(m for m in scorer.metrics if m.name == name)


def score_all(scorer: S.Scorer, cases: list[Case], answers: list[list[str]]) -> dict[str, np.ndarray]:
    return S.stack([[scorer.score(c, resp(a)) for a in sample] for c, sample in zip(cases, answers)])


def test_data_is_real():
    assert len(ROWS) == 400 and ROWS[0]["sentence1"] == "A man with a hard hat is dancing."


# ------------------------------------------------------------------ registry


def test_registry():
    assert set(S.SCORERS) == {"exact_match", "contains", "regex", "rouge_l", "bleu", "json_schema", "tool_call"}
    for name, scorer in S.SCORERS.items():
        assert S.get(name) is scorer and scorer.name == name and scorer.description
        assert scorer.primary in {m.name for m in scorer.metrics}
        assert all(m.higher_is_better for m in scorer.metrics)
    assert {n for n, s in S.SCORERS.items() if s.binary} == {"exact_match", "contains", "regex", "json_schema",
                                                            "tool_call"}
    assert S.get("json_schema").primary == "schema_compliance"
    with pytest.raises(KeyError, match="unknown scorer 'blue'"):
        S.get("blue")


def test_register_rejects_a_second_scorer_with_the_same_name():
    existing = S.get("regex")
    assert S.register(existing) is existing  # idempotent for the same object
    with pytest.raises(ValueError, match="already registered"):
        S.register(S.Scorer("regex", True, "regex", existing.score, existing.metrics, "another"))


@pytest.mark.parametrize("name", sorted(S.SCORERS))
@pytest.mark.parametrize("answer", ["", "   "])
def test_empty_answer_scores_without_error(name, answer):
    c = case("Paris", schema={"type": "object"}, call={"name": "get_weather", "arguments": {"city": "Paris"}})
    values = S.get(name).score(c, resp(answer))
    scorer = S.get(name)
    if scorer.binary:
        assert values[scorer.primary] == 0.0
    elif name == "rouge_l":
        assert values["rouge_l"] == 0.0


# ------------------------------------------------------------------ exact_match / contains / regex


@pytest.mark.parametrize("answer, expected, match", [
    ("Paris", "Paris", True),
    ("PARIS", "paris", True),
    ("  Paris \n", "Paris", True),
    ("New   York\tCity", "new york city", True),
    ("Ｐａｒｉｓ", "Paris", True),  # full-width letters (NFKC)
    ("ﬁne", "fine", True),  # ligature (NFKC)
    ("Straße", "STRASSE", True),  # casefold, not lower()
    ("Ｎｅｗ\u3000Ｙｏｒｋ", "new york", True),  # ideographic space is whitespace
    ("Paris.", "Paris", False),  # punctuation is kept
    ("Pa ris", "Paris", False),
    ("", "Paris", False),
])
def test_exact_match(answer, expected, match):
    assert S.score_exact_match(case(expected), resp(answer)) == {"exact_match": float(match)}


def test_normalize_text():
    assert S.normalize_text("  Ｈｅｌｌｏ,\n\n  WORLD\t ") == "hello, world"
    assert S.normalize_text("") == ""


def test_exact_match_on_real_pairs():
    cases = [case(r) for r in REFS]
    arrays = score_all(S.get("exact_match"), cases, [[a] for a in ANSWERS])
    want = np.mean([a.strip().lower() == r.strip().lower() for a, r in zip(ANSWERS, REFS)])
    assert metric(S.get("exact_match"), "exact_match").compute(arrays) == pytest.approx(want)
    # each sentence matches itself, in any case and spacing
    same = score_all(S.get("exact_match"), cases, [["  " + r.upper() + " "] for r in REFS])
    assert metric(S.get("exact_match"), "exact_match").compute(same) == 1.0


@pytest.mark.parametrize("answer, expected, match", [
    ("The capital is PARIS, of course.", "paris", True),
    ("The capital is\n  Paris", "is paris", True),
    ("The capital is Lyon", "Paris", False),
    ("", "Paris", False),
])
def test_contains(answer, expected, match):
    assert S.score_contains(case(expected), resp(answer)) == {"contains": float(match)}


@pytest.mark.parametrize("answer, pattern, match", [
    ("The answer is 42.", r"\b42\b", True),
    ("The answer is 420.", r"\b42\b", False),
    ("PARIS", "Paris", False),  # raw text: no normalisation
    ("PARIS", "(?i)paris", True),
    ("", r"^$", True),
    ("", r"\w", False),
])
def test_regex(answer, pattern, match):
    assert S.score_regex(case(pattern), resp(answer)) == {"regex": float(match)}


# ------------------------------------------------------------------ rouge_l


def test_rouge_l_matches_rouge_score():
    reference = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    want = [reference.score(target=r, prediction=a)["rougeL"].fmeasure for a, r in zip(ANSWERS, REFS)]
    cases = [case(r) for r in REFS]
    got = [S.score_rouge_l(c, resp(a))["rouge_l"] for c, a in zip(cases, ANSWERS)]
    assert got == want
    arrays = score_all(S.get("rouge_l"), cases, [[a] for a in ANSWERS])
    assert arrays["rouge_l"].shape == (400, 1)
    assert metric(S.get("rouge_l"), "rouge_l").compute(arrays) == pytest.approx(np.mean(want), abs=1e-12)
    assert 0.3 < np.mean(want) < 1.0  # paraphrases overlap a lot, but not entirely


# ------------------------------------------------------------------ bleu


def bleu_of(cases: list[Case], answers: list[list[str]]) -> float:
    return metric(S.get("bleu"), "bleu").compute(score_all(S.get("bleu"), cases, answers))


def test_bleu_statistics_are_sacrebleus():
    s = sacrebleu.metrics.BLEU().corpus_score([ANSWERS[0]], [[REFS[0]]])
    stats = S.score_bleu(case(REFS[0]), resp(ANSWERS[0]))["bleu_stats"]
    assert stats.tolist() == [*s.counts, *s.totals, s.sys_len, s.ref_len]


def test_bleu_equals_corpus_bleu_on_400_pairs():
    got = bleu_of([case(r) for r in REFS], [[a] for a in ANSWERS])
    want = sacrebleu.corpus_bleu(ANSWERS, [REFS]).score
    assert got == pytest.approx(want, abs=1e-9)
    assert 5 < want < 100


@pytest.mark.parametrize("index", [slice(0, 1), slice(0, 50), slice(3, None, 7), slice(390, None)])
def test_bleu_on_subsets(index):
    answers, refs = ANSWERS[index], REFS[index]
    assert bleu_of([case(r) for r in refs], [[a] for a in answers]) == \
        pytest.approx(sacrebleu.corpus_bleu(answers, [refs]).score, abs=1e-9)


def test_bleu_is_a_pure_function_of_resampled_arrays():
    arrays = score_all(S.get("bleu"), [case(r) for r in REFS], [[a] for a in ANSWERS])
    idx = np.random.default_rng(7).integers(0, 400, size=400)  # a bootstrap resample, with repeats
    got = metric(S.get("bleu"), "bleu").compute({k: v[idx] for k, v in arrays.items()})
    want = sacrebleu.corpus_bleu([ANSWERS[i] for i in idx], [[REFS[i] for i in idx]]).score
    assert got == pytest.approx(want, abs=1e-9)


def test_bleu_with_two_samples_per_case_is_corpus_bleu_of_the_flattened_list():
    n = 120
    samples = [[ANSWERS[i], ANSWERS[(i + 1) % n]] for i in range(n)]  # second sample: a real, worse answer
    got = bleu_of([case(r) for r in REFS[:n]], samples)
    flat_hyps = [h for pair in samples for h in pair]
    flat_refs = [r for r in REFS[:n] for _ in range(2)]
    assert got == pytest.approx(sacrebleu.corpus_bleu(flat_hyps, [flat_refs]).score, abs=1e-9)


def test_bleu_with_empty_answers():
    answers = ANSWERS[:30]
    answers[4] = ""
    assert bleu_of([case(r) for r in REFS[:30]], [[a] for a in answers]) == \
        pytest.approx(sacrebleu.corpus_bleu(answers, [REFS[:30]]).score, abs=1e-9)
    assert bleu_of([case(REFS[0])], [[""]]) == pytest.approx(sacrebleu.corpus_bleu([""], [[REFS[0]]]).score,
                                                             abs=1e-9)
    assert bleu_of([case(r) for r in REFS[:3]], [[""]] * 3) == 0.0


def test_bleu_skips_missing_samples():
    arrays = score_all(S.get("bleu"), [case(r) for r in REFS[:10]], [[a] for a in ANSWERS[:10]])
    arrays["bleu_stats"][3] = np.nan
    keep = [i for i in range(10) if i != 3]
    assert S.corpus_bleu(arrays) == pytest.approx(
        sacrebleu.corpus_bleu([ANSWERS[i] for i in keep], [[REFS[i] for i in keep]]).score, abs=1e-9)
    arrays["bleu_stats"][:] = np.nan
    assert math.isnan(S.corpus_bleu(arrays))


# ------------------------------------------------------------------ json_schema


SCHEMA = {"type": "object", "properties": {"sentence": {"type": "string"},
                                           "score": {"type": "number", "minimum": 0, "maximum": 5}},
          "required": ["sentence", "score"], "additionalProperties": False}


def documents() -> list[tuple[object, bool]]:
    """(value, valid?) pairs built from real rows."""
    out = []
    for r in ROWS[:40]:
        good = {"sentence": r["sentence1"], "score": r["score"]}
        out += [(good, True), ({"sentence": r["sentence1"], "score": str(r["score"])}, False),
                ({"sentence": r["sentence1"]}, False), ({**good, "extra": r["sentence2"]}, False),
                ([good], False), ({"sentence": r["sentence1"], "score": r["score"] + 5.5}, False)]
    return out


@pytest.mark.parametrize("wrap", [
    lambda d: d,
    lambda d: f"  {d}\n",
    lambda d: f"```json\n{d}\n```",
    lambda d: f"```\n{d}\n```",
], ids=["plain", "spaces", "fenced", "fenced-no-lang"])
def test_json_schema_agrees_with_jsonschema(wrap):
    validator = jsonschema.Draft202012Validator(SCHEMA)
    c = case(schema=SCHEMA)
    docs = documents()
    assert {v for _, v in docs} == {True, False}
    for value, _ in docs:
        out = S.score_json_schema(c, resp(wrap(json.dumps(value, ensure_ascii=False))))
        assert out == {"json_valid": 1.0, "schema_compliance": float(validator.is_valid(value))}


@pytest.mark.parametrize("wrap", [
    lambda d: f"Here is the JSON you asked for:\n{d}\nLet me know if you need more.",
    lambda d: f"Sure!\n```json\n{d}\n```\nDone.",
    lambda d: f"{d} {d}",
], ids=["embedded", "fence-in-prose", "two-values"])
def test_json_in_prose_is_not_compliant(wrap):
    """A consumer parsing the answer would fail on prose around the JSON: neither valid nor compliant."""
    c = case(schema=SCHEMA)
    for value, _ in documents()[:12]:
        out = S.score_json_schema(c, resp(wrap(json.dumps(value, ensure_ascii=False))))
        assert out == {"json_valid": 0.0, "schema_compliance": 0.0}


def test_json_schema_invalid_json():
    c = case(schema=SCHEMA)
    for text in ["", "{'sentence': 'x', 'score': 1}", "The score is 3.", '{"sentence": "x", "score": 1',
                 "```json\n{sentence: x}\n```", "NaN", '{"sentence": "x", "score": NaN}']:
        assert S.score_json_schema(c, resp(text)) == {"json_valid": 0.0, "schema_compliance": 0.0}, text


def test_json_schema_uses_the_declared_draft():
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", "dependencies": {"a": ["b"]}}
    assert S.score_json_schema(case(schema=draft7), resp('{"a": 1}'))["schema_compliance"] == 0.0
    assert S.score_json_schema(case(schema=draft7), resp('{"a": 1, "b": 2}'))["schema_compliance"] == 1.0
    draft2020 = {"dependencies": {"a": ["b"]}}  # not a 2020-12 keyword: ignored
    assert S.score_json_schema(case(schema=draft2020), resp('{"a": 1}'))["schema_compliance"] == 1.0


def test_json_schema_metrics():
    c = case(schema=SCHEMA)
    good = json.dumps({"sentence": ANSWERS[0], "score": 4})
    arrays = S.stack([[S.score_json_schema(c, resp(good)), S.score_json_schema(c, resp("no"))],
                      [S.score_json_schema(c, resp('{"sentence": 1}'))] * 2])
    scorer = S.get("json_schema")
    assert metric(scorer, "schema_compliance").compute(arrays) == pytest.approx(0.25)
    assert metric(scorer, "json_valid").compute(arrays) == pytest.approx(0.75)


@pytest.mark.parametrize("text, value", [
    ('{"a": 1}', {"a": 1}),
    ("[1, 2]", [1, 2]),
    ("42", 42),
    ('"text"', "text"),
    ('```json\n{"a": [1, {"b": null}]}\n```', {"a": [1, {"b": None}]}),
    ('```JSON {"a": 1}```', {"a": 1}),
    ('Answer: {"a": {"b": 2}} and then {"c": 3}', {"a": {"b": 2}}),
    ('Note [see below]: {"a": 1}', {"a": 1}),  # the first bracket is prose; the next one decodes
    ('[1, 2] then {"a": 1}', [1, 2]),
    ("x" + "[" * 5000, None),
])
def test_extract_json(text, value):
    assert S.extract_json(text) == (value is not None, value)


# ------------------------------------------------------------------ tool_call


def tc(expected: dict | None, response: ChatResponse, expects: bool = True) -> dict:
    return S.score_tool_call(case(call=expected, expects=expects), response)


OSLO = {"name": "get_weather", "arguments": {"city": "Oslo", "units": "metric"}}


def test_tool_call_right_call():
    assert tc(OSLO, resp(calls=[ToolCall("get_weather", {"units": "metric", "city": "Oslo"})])) == \
        {"tool_call": 1.0, "tool_name_accuracy": 1.0, "args_accuracy": 1.0}


def test_tool_call_only_the_first_call_counts():
    calls = [ToolCall("get_time", {}), ToolCall("get_weather", OSLO["arguments"])]
    assert tc(OSLO, resp(calls=calls)) == {"tool_call": 0.0, "tool_name_accuracy": 0.0, "args_accuracy": 0.0}


def test_tool_call_wrong_name():
    assert tc(OSLO, resp(calls=[ToolCall("get_time", OSLO["arguments"])])) == \
        {"tool_call": 0.0, "tool_name_accuracy": 0.0, "args_accuracy": 0.0}


def test_tool_call_no_call():
    assert tc(OSLO, resp("It is sunny in Oslo.")) == {"tool_call": 0.0, "tool_name_accuracy": 0.0, "args_accuracy": 0.0}


@pytest.mark.parametrize("arguments, args_accuracy", [
    ({"city": "Bergen", "units": "metric"}, 1 / 2),  # wrong value
    ({"city": "Oslo"}, 1 / 2),  # missing argument
    ({"city": "Oslo", "units": "metric", "days": 3}, 2 / 3),  # invented argument
    ({"city": "Oslo", "unit": "metric"}, 1 / 3),  # misspelt key: missing one and invented one
    ({}, 0.0),
])
def test_tool_call_arguments(arguments, args_accuracy):
    assert tc(OSLO, resp(calls=[ToolCall("get_weather", arguments)])) == \
        {"tool_call": 0.0, "tool_name_accuracy": 1.0, "args_accuracy": pytest.approx(args_accuracy)}


@pytest.mark.parametrize("want, got, equal", [
    (True, 1, False), (1, True, False), (False, 0, False), (True, True, True),
    (1, 1.0, True), (2.5, 2.5, True), ("1", 1, False), (None, 0, False), (None, None, True),
    ([1, True], [1.0, True], True), ([1, True], [1, 1], False),
    ({"a": [{"b": False}]}, {"a": [{"b": 0}]}, False), ({"a": [{"b": 0}]}, {"a": [{"b": 0.0}]}, True),
    ([1, 2], [2, 1], False), ({"a": 1}, {"a": 1, "b": None}, False),
])
def test_tool_call_strict_equality(want, got, equal):
    expected = {"name": "get_weather", "arguments": {"x": want}}
    out = tc(expected, resp(calls=[ToolCall("get_weather", {"x": got})]))
    assert out == {"tool_call": float(equal), "tool_name_accuracy": 1.0, "args_accuracy": float(equal)}
    assert S.same_json(want, got) is equal


def test_tool_call_written_as_json_text():
    text = ('I will look that up.\n```json\n'
            '{"name": "get_weather", "arguments": {"city": "Oslo", "units": "metric"}}\n```')
    assert tc(OSLO, resp(text))["tool_call"] == 1.0
    text = '{"name": "get_weather", "parameters": {"city": "Oslo", "units": "metric"}}'
    assert tc(OSLO, resp(text))["tool_call"] == 1.0
    for not_a_call in ['{"name": 3, "arguments": {}}', '[{"name": "get_weather", "arguments": {}}]',
                       '{"name": "not_a_tool"}']:
        assert tc(OSLO, resp(not_a_call)) == {"tool_call": 0.0, "tool_name_accuracy": 0.0, "args_accuracy": 0.0}
    # a call of a known tool without arguments, or with arguments that are not an object, is a (wrong) call
    for wrong_args in ['{"name": "get_weather"}', '{"name": "get_weather", "arguments": "city=Oslo"}']:
        assert tc(OSLO, resp(wrong_args)) == {"tool_call": 0.0, "tool_name_accuracy": 1.0, "args_accuracy": 0.0}


def test_an_extra_call_fails_tool_call():
    calls = [ToolCall("get_weather", OSLO["arguments"]), ToolCall("get_time", {})]
    assert tc(OSLO, resp(calls=calls)) == {"tool_call": 0.0, "tool_name_accuracy": 1.0, "args_accuracy": 1.0}


def test_native_call_wins_over_text():
    response = resp('{"name": "get_time", "arguments": {}}', calls=[ToolCall("get_weather", OSLO["arguments"])])
    assert tc(OSLO, response)["tool_call"] == 1.0


def test_tool_call_expected_none():
    nan_args = {"tool_call": 1.0, "tool_name_accuracy": 1.0}
    out = tc(None, resp("I cannot help with that."))
    assert math.isnan(out.pop("args_accuracy")) and out == nan_args
    out = tc(None, resp(calls=[ToolCall("get_time", {})]))
    assert math.isnan(out.pop("args_accuracy")) and out == {"tool_call": 0.0, "tool_name_accuracy": 0.0}
    out = tc(None, resp('{"name": "get_time", "arguments": {}}'))  # a call written as text is a call too
    assert out["tool_call"] == 0.0
    for text_call in ('{"name": "get_time"}', '{"name": "get_time", "arguments": "{}"}'):
        assert tc(None, resp(text_call))["tool_call"] == 0.0


def test_tool_call_without_arguments():
    out = tc({"name": "get_time", "arguments": {}}, resp(calls=[ToolCall("get_time", {})]))
    assert math.isnan(out.pop("args_accuracy")) and out == {"tool_call": 1.0, "tool_name_accuracy": 1.0}
    out = tc({"name": "get_time", "arguments": {}}, resp(calls=[ToolCall("get_time", {"tz": "UTC"})]))
    assert out == {"tool_call": 0.0, "tool_name_accuracy": 1.0, "args_accuracy": 0.0}
    # a wrong or missing call when no arguments are expected: the miss is tool_call's, not args_accuracy's
    for wrong in (resp("no call"), resp(calls=[ToolCall("get_weather", {"city": "Oslo"})])):
        out = tc({"name": "get_time", "arguments": {}}, wrong)
        assert math.isnan(out.pop("args_accuracy")) and out == {"tool_call": 0.0, "tool_name_accuracy": 0.0}


def test_tool_call_unparsable_arguments_count_as_none():
    out = tc(OSLO, resp(calls=[ToolCall("get_weather", '{"city": "Oslo", "units": ')]))
    assert out == {"tool_call": 0.0, "tool_name_accuracy": 1.0, "args_accuracy": 0.0}
    out = tc({"name": "get_time", "arguments": {}}, resp(calls=[ToolCall("get_time", "not json")]))
    assert out["tool_call"] == 0.0 and math.isnan(out["args_accuracy"])  # broken arguments never pass


def test_tool_call_not_applicable_without_the_key():
    out = tc(None, resp(calls=[ToolCall("get_time", {})]), expects=False)
    assert all(math.isnan(v) for v in out.values()) and set(out) == {"tool_call", "tool_name_accuracy",
                                                                      "args_accuracy"}


def test_tool_call_metrics():
    scorer = S.get("tool_call")
    right = resp(calls=[ToolCall("get_weather", OSLO["arguments"])])
    half = resp(calls=[ToolCall("get_weather", {"city": "Oslo"})])
    arrays = S.stack([
        [scorer.score(case(call=OSLO), right), scorer.score(case(call=OSLO), half)],  # case mean 0.5 / 0.75
        [scorer.score(case(call=None, expects=True), resp("no"))] * 2,  # 1, args NaN
    ])
    assert metric(scorer, "tool_call").compute(arrays) == pytest.approx((0.5 + 1) / 2)
    assert metric(scorer, "tool_name_accuracy").compute(arrays) == pytest.approx(1.0)
    assert metric(scorer, "args_accuracy").compute(arrays) == pytest.approx(0.75)  # the NaN case is left out


# ------------------------------------------------------------------ stack / case_mean


def test_stack_shapes():
    samples = [[{"a": 1.0, "v": np.arange(3.0)}, {"a": 0.0, "v": np.ones(3)}],
               [{"a": 1.0, "v": np.zeros(3)}, {"a": float("nan"), "v": np.full(3, 2.0)}],
               [{"a": 0.0, "v": np.arange(3.0)}, {"a": 1.0, "v": np.arange(3.0)}]]
    arrays = S.stack(samples)
    assert arrays["a"].shape == (3, 2) and arrays["a"].dtype == np.float64
    assert arrays["v"].shape == (3, 2, 3)
    assert arrays["v"][1, 1].tolist() == [2.0, 2.0, 2.0]
    assert np.isnan(arrays["a"][1, 1])


def test_stack_ragged_and_missing_keys_are_nan():
    arrays = S.stack([[{"a": 1.0}], [{"a": 0.0, "b": 1.0}, {"a": 1.0}]])
    assert arrays["a"].shape == arrays["b"].shape == (2, 2)
    assert np.isnan(arrays["a"][0, 1]) and np.isnan(arrays["b"][0, 0]) and np.isnan(arrays["b"][1, 1])
    assert S.stack([]) == {}
    with pytest.raises(ValueError, match="changes shape"):
        S.stack([[{"v": np.zeros(2)}, {"v": np.zeros(3)}]])


def test_case_mean_with_nan():
    nan = float("nan")
    arrays = {"x": np.array([[1.0, 0.0], [nan, 1.0], [nan, nan], [0.0, 0.0]])}
    # per case: 0.5, 1, (none), 0 -> mean over the three cases that have a value
    assert S.case_mean("x")(arrays) == pytest.approx(0.5)
    assert S.case_mean("x")({"x": np.array([1.0, 0.0, nan])}) == pytest.approx(0.5)  # one sample per case


def test_case_mean_all_nan_is_nan_without_warning():
    # pytest turns warnings into errors here, so a numpy "Mean of empty slice" would fail this test
    assert math.isnan(S.case_mean("x")({"x": np.full((4, 3), np.nan)}))
    assert math.isnan(S.case_mean("x")({"x": np.empty((0, 2))}))
