"""Scorers of a ``generation`` task, registered by name.

A :class:`Scorer` turns one sample (a :class:`~gate.cases.Case` and the model's
:class:`~gate.llm.ChatResponse`) into a few numbers, NaN where a value does not
apply. :func:`stack` gathers them into arrays shaped ``(n_cases, n_samples)`` (or
``(n_cases, n_samples, k)`` for vector values such as BLEU's sufficient statistics),
and each :class:`~gate.metrics.MetricDef` is a pure function of those arrays, so
the full run, a shard merge and every bootstrap resample of cases compute a metric
the same way.

Per-case metrics use :func:`case_mean`: the mean over a case's samples, then the
mean over cases, ignoring NaN at both levels (NaN when no case has a value).
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Mapping

import numpy as np

from gate.cases import Case, schema_validator_class
from gate.limits import linear_regex
from gate.llm import ChatResponse
from gate.metrics import Arrays, MetricDef, PerExampleMean

NAN = float("nan")
Values = dict[str, "float | np.ndarray"]


@dataclass(frozen=True)
class Scorer:
    name: str
    #: its ``primary`` value is 0/1 and counts toward whether a case passes
    binary: bool
    primary: str
    score: Callable[[Case, ChatResponse], Values]
    metrics: tuple[MetricDef, ...]
    description: str


SCORERS: dict[str, Scorer] = {}


def register(scorer: Scorer) -> Scorer:
    """Add ``scorer`` to :data:`SCORERS` (a second scorer with the same name is a programming error)."""
    if SCORERS.get(scorer.name, scorer) is not scorer:
        raise ValueError(f"a scorer named {scorer.name!r} is already registered")
    SCORERS[scorer.name] = scorer
    return scorer


def get(name: str) -> Scorer:
    """The scorer called ``name``; ``KeyError`` naming the known ones otherwise."""
    try:
        return SCORERS[name]
    except KeyError:
        raise KeyError(f"unknown scorer {name!r}; known: {', '.join(sorted(SCORERS))}") from None


# ---------------------------------------------------------------------------------------------
# arrays and aggregation


def stack(samples: list[list[Mapping[str, float | np.ndarray]]]) -> dict[str, np.ndarray]:
    """Per case, per sample value dicts -> ``{key: array (n_cases, n_samples[, k])}`` of float64.

    A key or sample missing somewhere (ragged sample counts) is NaN there.
    """
    n_cases = len(samples)
    n_samples = max((len(s) for s in samples), default=0)
    widths: dict[str, int | None] = {}
    for case in samples:
        for values in case:
            for key, value in values.items():
                width = np.shape(value)[0] if np.ndim(value) else None
                if widths.setdefault(key, width) != width:
                    raise ValueError(f"scorer value {key!r} changes shape between samples")
    out = {key: np.full((n_cases, n_samples) + ((w,) if w is not None else ()), NAN) for key, w in widths.items()}
    for i, case in enumerate(samples):
        for j, values in enumerate(case):
            for key, value in values.items():
                out[key][i, j] = value
    return out


def case_mean(key: str) -> PerExampleMean:
    """A metric: per case the mean over its non-NaN samples, then the mean over cases that have one.

    NaN when no case has a value; computed without numpy's all-NaN RuntimeWarnings.
    """

    def per_case(arrays: Arrays) -> np.ndarray:
        values = np.asarray(arrays[key], dtype=np.float64)
        if values.ndim == 1:
            values = values[:, None]
        present = ~np.isnan(values)
        counts = present.sum(axis=1)
        sums = np.where(present, values, 0.0).sum(axis=1)
        out = np.full(len(values), NAN)
        np.divide(sums, counts, out=out, where=counts > 0)
        return out

    return PerExampleMean(per_case, skip_nan=True)


def _metric(name: str, description: str) -> MetricDef:
    return MetricDef(name, True, case_mean(name), description)


def _answer(response: ChatResponse) -> str:
    return response.text or ""


# ---------------------------------------------------------------------------------------------
# text scorers


def normalize_text(s: str) -> str:
    """The ``exact_match`` / ``contains`` normalisation: Unicode NFKC, casefold, strip, and collapse every
    run of whitespace to one space. So ``"  Ｐａｒｉｓ\\n"`` and ``"paris"`` are equal; punctuation is kept."""
    return " ".join(unicodedata.normalize("NFKC", s).casefold().split())


def score_exact_match(case: Case, response: ChatResponse) -> Values:
    """1 when the normalised answer equals the normalised ``expected`` (see :func:`normalize_text`)."""
    if case.expected is None:
        return {"exact_match": NAN}
    return {"exact_match": float(normalize_text(_answer(response)) == normalize_text(case.expected))}


def score_contains(case: Case, response: ChatResponse) -> Values:
    """1 when the normalised ``expected`` occurs in the normalised answer (a fact stated among other words)."""
    if case.expected is None:
        return {"contains": NAN}
    return {"contains": float(normalize_text(case.expected) in normalize_text(_answer(response)))}


@lru_cache(maxsize=256)
def _pattern(expected: str) -> Any:
    return linear_regex(expected)


def score_regex(case: Case, response: ChatResponse) -> Values:
    """1 when the pattern ``expected`` is found anywhere in the raw answer (like ``re.search``, no normalisation).

    The pattern comes from a pull request and runs on RE2, whose time is linear in the answer: on Python's
    backtracking ``re``, ``^(a+)+$`` against 40 ``a`` and a ``!`` runs for days. RE2 syntax is Python's
    without backreferences and lookaround (refused when the cases are read); ``\\d``, ``\\w``, ``\\s`` and
    ``\\b`` are ASCII-only and ``$`` matches only at the very end (see docs/limits.md)."""
    if case.expected is None:
        return {"regex": NAN}
    return {"regex": float(_pattern(case.expected).search(_answer(response)) is not None)}


@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def score_rouge_l(case: Case, response: ChatResponse) -> Values:
    """ROUGE-L F-measure (longest common subsequence of tokens) with the reference ``rouge_score`` package."""
    if case.expected is None:
        return {"rouge_l": NAN}
    return {"rouge_l": float(_rouge().score(target=case.expected, prediction=_answer(response))["rougeL"].fmeasure)}


@lru_cache(maxsize=1)
def _bleu():
    from sacrebleu.metrics import BLEU

    # effective_order only changes a sentence's own score (unused here), not its statistics; it also
    # silences sacrebleu's "enable effective_order for sentence-level BLEU" log line on every sample.
    return BLEU(effective_order=True)


def score_bleu(case: Case, response: ChatResponse) -> Values:
    """The sample's BLEU sufficient statistics: n-gram matches (4), n-gram totals (4), sys_len, ref_len.

    Corpus BLEU is not a mean of sentence scores, so the metric sums these over whatever
    cases it is given and computes BLEU once, exactly as ``sacrebleu.corpus_bleu`` does.
    """
    if case.expected is None:
        return {"bleu_stats": np.full(10, NAN)}
    s = _bleu().sentence_score(_answer(response), [case.expected])
    return {"bleu_stats": np.array([*s.counts, *s.totals, s.sys_len, s.ref_len], dtype=np.float64)}


def corpus_bleu(arrays: Arrays) -> float:
    """sacrebleu's corpus BLEU (0-100, ``exp`` smoothing) from summed per-sample statistics; NaN if none."""
    from sacrebleu.metrics import BLEU

    stats = np.asarray(arrays["bleu_stats"], dtype=np.float64)
    stats = stats.reshape(-1, 10)
    stats = stats[np.isfinite(stats).all(axis=1)]
    if not len(stats):
        return NAN
    total = [int(round(x)) for x in stats.sum(axis=0)]
    return float(BLEU.compute_bleu(correct=total[0:4], total=total[4:8], sys_len=total[8], ref_len=total[9],
                                   smooth_method="exp").score)


def corpus_bleu_rows(arrays: Arrays) -> np.ndarray:
    """:func:`corpus_bleu` of every resampled row (a leading axis): the statistics summed for all rows at once,
    then sacrebleu's own formula once per row, so each value is exactly what :func:`corpus_bleu` gives."""
    from sacrebleu.metrics import BLEU

    stats = np.asarray(arrays["bleu_stats"], dtype=np.float64)
    stats = stats.reshape(len(stats), -1, 10)
    present = np.isfinite(stats).all(axis=2)
    totals = np.rint(np.where(present[..., None], stats, 0.0).sum(axis=1)).astype(np.int64).tolist()
    out = np.full(len(stats), NAN)
    for r in np.flatnonzero(present.any(axis=1)):
        t = totals[r]
        out[r] = BLEU.compute_bleu(correct=t[0:4], total=t[4:8], sys_len=t[8], ref_len=t[9],
                                   smooth_method="exp").score
    return out


# ---------------------------------------------------------------------------------------------
# structured output


# On RE2: with Python's re, the lazy body and the whitespace before the closing fence overlap, and an
# answer of 20,000 newlines after an opening fence takes seconds (quadratic).
_FENCE = linear_regex(r"(?s)\A```[\w+-]*[ \t]*\n?(.*?)\s*```\z")
_JSON_START = re.compile(r"[\[{]")
_MAX_STARTS = 64  # bounds the work on a long answer full of brackets that are not JSON


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _loads(text: str) -> tuple[bool, Any]:
    try:
        return True, _DECODER.decode(text)
    except (ValueError, RecursionError):
        return False, None


def strict_json(text: str) -> tuple[bool, Any]:
    """The answer as JSON only if that is all it is: the whole (stripped) answer, or one markdown code
    fence around it. What a consumer's ``json.loads(answer)`` (after unfencing) would accept."""
    s = (text or "").strip()
    if not s:
        return False, None
    found, value = _loads(s)
    if found:
        return found, value
    fence = _FENCE.match(s)
    return _loads(fence.group(1).strip()) if fence else (False, None)


def extract_json(text: str) -> tuple[bool, Any]:
    """The JSON value an answer holds, as ``(found, value)``.

    Tried in order: the whole (stripped) answer; the inside of one surrounding markdown
    code fence (```` ```json ... ``` ````); else the first ``{`` or ``[`` from which a complete
    JSON value decodes (``raw_decode``, so trailing prose is ignored; the next ``{``/``[`` is
    tried when one does not decode, up to 64). NaN and Infinity are not JSON and never match.
    """
    found, value = strict_json(text)
    if found:
        return found, value
    s = (text or "").strip()
    for n, start in enumerate(_JSON_START.finditer(s)):
        if n == _MAX_STARTS:
            break
        try:
            return True, _DECODER.raw_decode(s, start.start())[0]
        except (ValueError, RecursionError):
            continue
    return False, None


@lru_cache(maxsize=128)
def _validator(schema_json: str):
    schema = json.loads(schema_json)
    return schema_validator_class(schema)(schema)


def score_json_schema(case: Case, response: ChatResponse) -> Values:
    """``json_valid``: the answer is JSON and nothing else (see :func:`strict_json`: prose around it, or a
    second value after it, is not valid — a consumer parsing the answer would fail); ``schema_compliance``:
    and that JSON is valid against the case's schema (its ``$schema`` draft, default 2020-12; formats not
    checked)."""
    found, value = strict_json(_answer(response))
    if case.schema is None:
        return {"json_valid": float(found), "schema_compliance": NAN}
    try:
        valid = found and _validator(json.dumps(case.schema, sort_keys=True)).is_valid(value)
    except RecursionError:  # an answer nested too deeply to check is not one a consumer could use
        valid = False
    return {"json_valid": float(found), "schema_compliance": float(valid)}


# ---------------------------------------------------------------------------------------------
# tool calls


def same_json(a: Any, b: Any) -> bool:
    """JSON equality without Python's ``True == 1``: booleans equal only booleans, while ``1 == 1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


_UNPARSABLE = object()  # arguments that are not a JSON object: never equal to any expected arguments


def model_calls(case: Case, response: ChatResponse) -> list[tuple[str, Any]]:
    """Every call the model made as ``(name, arguments)``: its native tool calls, else a JSON object
    written in the answer text (how local models without a tool-call format answer) that has a string
    ``"name"`` and an ``"arguments"``/``"parameters"`` key, or whose name is one of the case's tools.
    Arguments that are not a JSON object come back as an unparsable marker, which matches nothing."""
    if response.tool_calls:
        return [(c.name, c.arguments if isinstance(c.arguments, dict) else _UNPARSABLE) for c in response.tool_calls]
    found, value = extract_json(_answer(response))
    if not (found and isinstance(value, dict) and isinstance(value.get("name"), str)):
        return []
    tools = {t.get("function", {}).get("name") for t in case.tools or ()}
    for key in ("arguments", "parameters"):
        if key in value:
            return [(value["name"], value[key] if isinstance(value[key], dict) else _UNPARSABLE)]
    return [(value["name"], {})] if value["name"] in tools else []


def score_tool_call(case: Case, response: ChatResponse) -> Values:
    """Did the model make exactly the expected call (or, for null, no call at all)?

    ``tool_call`` is 1 only for one call with the expected name and JSON-equal arguments: an extra call,
    or arguments that do not parse, fail it. ``args_accuracy`` = expected keys with an equal value / keys
    in expected ∪ actual arguments, so invented arguments lower it; NaN when no arguments are expected
    (nor given, or the call is wrong: ``tool_call`` already counts that miss).
    """
    if not case.expects_tool_call:
        return {"tool_call": NAN, "tool_name_accuracy": NAN, "args_accuracy": NAN}
    calls = model_calls(case, response)
    expected = case.expected_tool_call
    if expected is None:
        ok = float(not calls)
        return {"tool_call": ok, "tool_name_accuracy": ok, "args_accuracy": NAN}
    want = expected["arguments"]
    if not calls or calls[0][0] != expected["name"]:
        return {"tool_call": 0.0, "tool_name_accuracy": 0.0, "args_accuracy": 0.0 if want else NAN}
    got = calls[0][1]
    if got is _UNPARSABLE:
        return {"tool_call": 0.0, "tool_name_accuracy": 1.0, "args_accuracy": 0.0 if want else NAN}
    keys = want.keys() | got.keys()
    right = sum(1 for k in want if k in got and same_json(want[k], got[k]))
    return {"tool_call": float(len(calls) == 1 and same_json(want, got)), "tool_name_accuracy": 1.0,
            "args_accuracy": right / len(keys) if keys else NAN}


# ---------------------------------------------------------------------------------------------
# the registry


register(Scorer("exact_match", True, "exact_match", score_exact_match,
                (_metric("exact_match", "share of answers equal to 'expected' after normalisation"),),
                "answer equals 'expected' after NFKC, casefold and whitespace normalisation"))
register(Scorer("contains", True, "contains", score_contains,
                (_metric("contains", "share of answers containing 'expected' after normalisation"),),
                "answer contains 'expected' after NFKC, casefold and whitespace normalisation"))
register(Scorer("regex", True, "regex", score_regex,
                (_metric("regex", "share of answers in which the pattern 'expected' is found"),),
                "the regular expression 'expected' (RE2 syntax) is found anywhere in the raw answer"))
register(Scorer("rouge_l", False, "rouge_l", score_rouge_l,
                (_metric("rouge_l", "mean ROUGE-L F-measure against 'expected'"),),
                "ROUGE-L F-measure against 'expected' (rouge_score, no stemming)"))
register(Scorer("bleu", False, "bleu", score_bleu,
                (MetricDef("bleu", True, corpus_bleu, "corpus BLEU against 'expected' (sacrebleu, 0-100)",
                           batch=corpus_bleu_rows),),
                "corpus BLEU against 'expected' (sacrebleu defaults: 13a tokenizer, exp smoothing)"))
register(Scorer("json_schema", True, "schema_compliance", score_json_schema,
                (_metric("schema_compliance", "share of answers whose JSON is valid against the schema"),
                 _metric("json_valid", "share of answers holding parseable JSON")),
                "the answer holds JSON that is valid against the case's JSON Schema"))
register(Scorer("tool_call", True, "tool_call", score_tool_call,
                (_metric("tool_call", "share of samples calling the expected tool with exactly the expected "
                                      "arguments (or no tool when none is expected)"),
                 _metric("tool_name_accuracy", "share of samples calling the expected tool"),
                 _metric("args_accuracy", "mean share of argument keys with the expected value")),
                "the model's tool call (native, or JSON in the text) matches 'expected_tool_call'"))
