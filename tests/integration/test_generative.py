"""Generative tasks end to end: gate's ``openai:`` provider, driven through the real ``openai`` SDK
against the local OpenAI-compatible test server (real wire format, scripted answers).

Response cache, repeats and seeds, per-category slices, tool calls, perplexity from prompt
log-probabilities, the pairwise judge, a suite mixing embedding and generative tasks, the dry
run, and the go/no-go ``thresholds.example.json`` on a generated results file. Faults, retries
and bad input are in ``test_generative_faults.py``.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

from gate.cache import ResponseCache
from gate.cli import cli
from gate.dispatch import RetryPolicy
from gate.llm import ChatResponse
from gate.runner import run_suite
from gate.suite import load_suite
from gate.tasks import load_task

from tests.conftest import valid_results, write_jsonl

try:
    from tests import openai_server
    from tests.openai_server import OpenAIServer, suite_model
except ModuleNotFoundError:  # run as `pytest`, not `python -m pytest`
    import openai_server  # type: ignore[no-redef]
    from openai_server import OpenAIServer, suite_model  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[2]
STSB = ROOT / "tests" / "data" / "stsb-dev-400.jsonl"
KEY_ENV = "GATE_GEN_TEST_API_KEY"
CHAT = "/v1/chat/completions"
EMBED = "/v1/embeddings"
COMPLETIONS = "/v1/completions"
FAST = RetryPolicy(max_retries=3, base_delay=0.01)
BASE, CAND, JUDGE = "gpt-base", "gpt-cand", "gpt-judge"


# --- helpers -----------------------------------------------------------------------------------


def stsb_rows(n: int) -> list[dict]:
    rows = [json.loads(line) for line in STSB.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows[:n]


def sentences(n: int) -> list[str]:
    """``n`` distinct real sentences (STS-B dev) to use as prompts."""
    out: list[str] = []
    for row in stsb_rows(200):
        for s in (row["sentence1"], row["sentence2"]):
            if s not in out:
                out.append(s)
    return out[:n]


def model(server: OpenAIServer, name: str, **options: Any) -> dict[str, Any]:
    return suite_model(server, name, KEY_ENV, **options)


def write_suite(path: Path, baseline: dict, candidate: dict, tasks: list[dict], name: str = "gen") -> Path:
    return openai_server.write_suite(path, baseline, candidate, tasks, name)


def run(suite: Path, seed: int = 0, **kwargs: Any) -> dict:
    return run_suite(load_suite(suite), seed=seed, policy=FAST, **kwargs).results


def invoke(*args: Any):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def bodies(server: OpenAIServer, model_id: str | None = None, path: str = CHAT) -> list[dict]:
    return [r["body"] for r in server.requests
            if r["path"] == path and (model_id is None or r["body"].get("model") == model_id)]


def last_user(body: dict) -> str:
    return [m["content"] for m in body["messages"] if m["role"] == "user"][-1]


def values(results: dict, metric: str) -> tuple[float | None, float | None]:
    m = results["metrics"][metric]
    return m["baseline"], m["candidate"]


@pytest.fixture
def server(monkeypatch) -> Iterator[OpenAIServer]:
    monkeypatch.setenv(KEY_ENV, "test-key")
    with OpenAIServer() as srv:
        yield srv
    assert srv.errors == []


@pytest.fixture
def qa_cases(tmp_path) -> tuple[Path, list[dict]]:
    """Four questions; the scripted answers are right for three of them for the candidate, two for the baseline."""
    rows = [{"id": f"q{i}", "prompt": p, "expected": e} for i, (p, e) in enumerate([
        ("What is the capital of France?", "Paris"),
        ("What is the capital of Italy?", "Rome"),
        ("What is the capital of Spain?", "Madrid"),
        ("What is the capital of Norway?", "Oslo"),
    ])]
    return write_jsonl(tmp_path / "qa.jsonl", rows), rows


def script_qa(server: OpenAIServer) -> None:
    server.answer("Paris", match="France")
    server.answer("Rome", match="Italy")
    server.answer("Madrid", match="Spain", model=CAND)
    server.answer("Bergen", match="Norway")


# --- response cache ----------------------------------------------------------------------------


def test_second_run_with_the_cache_sends_nothing_and_changes_only_request_what_changed(server, qa_cases, tmp_path):
    cases, rows = qa_cases
    script_qa(server)
    other = write_jsonl(tmp_path / "other.jsonl", [{"id": f"o{i}", "prompt": s, "expected": s}
                                                   for i, s in enumerate(sentences(2))])
    task_a = {"name": "gen-a", "type": "generation", "cases": cases.name, "scorers": ["exact_match"]}
    task_b = {"name": "gen-b", "type": "generation", "cases": other.name, "scorers": ["contains"]}
    write_jsonl(tmp_path / "ppl.jsonl", [{"text": t} for t in sentences(3)])
    write_jsonl(tmp_path / "pairs.jsonl", [{"id": "p", "prompt": sentences(5)[4]}])  # a prompt of its own
    server.answer("B", model=JUDGE)
    others = [{"name": "ppl", "type": "perplexity", "data": "ppl.jsonl"},
              {"name": "prefs", "type": "pairwise", "cases": "pairs.jsonl", "judge": model(server, JUDGE)}]
    suite = tmp_path / "suite.yaml"
    pair = (model(server, BASE), model(server, CAND))
    write_suite(suite, *pair, [task_a, task_b, *others])
    cache = tmp_path / "cache"

    first = invoke("run", suite, "--cache", cache, "--out", tmp_path / "o1", "-q")
    assert first.exit_code == 0, first.output
    sent = server.count()
    assert server.count(CHAT, outcome="ok") == (4 + 2) * 2 + 2 + 2
    assert sent == server.count(CHAT) + server.count(COMPLETIONS, outcome="ok") == 16 + 6
    r1 = valid_results(tmp_path / "o1")

    second = invoke("run", suite, "--cache", cache, "--out", tmp_path / "o2", "-q")
    assert second.exit_code == 0, second.output
    assert server.count() == sent  # not one request
    r2 = valid_results(tmp_path / "o2")
    assert r2["metrics"] == r1["metrics"]  # latency included: a cached response keeps its measured latency
    assert r1["metrics"]["gen-a/exact_match"]["candidate"] == 0.75
    for task, n in (("gen-a", 4), ("gen-b", 2)):
        for role in ("baseline", "candidate"):
            usage = r2["tasks"][task]["usage"][role]
            assert (usage["cache_hits"], usage["requests"], usage["attempts"]) == (n, 0, 0)
            assert r1["tasks"][task]["usage"][role]["requests"] == n

    def rerun(changed_a: dict, changed_b: dict) -> list[dict]:
        before = len(server.requests)
        write_suite(suite, *pair, [changed_a, changed_b, *others])
        result = invoke("run", suite, "--cache", cache, "--out", tmp_path / "o3", "-q")
        assert result.exit_code == 0, result.output
        return [r["body"] for r in server.requests[before:]]

    a_prompts = sorted(r["prompt"] for r in rows)
    fresh = rerun({**task_a, "max_tokens": 64}, task_b)  # only gen-a's requests carry max_tokens 64
    assert sorted(last_user(b) for b in fresh) == sorted(a_prompts * 2)
    assert {b["max_tokens"] for b in fresh} == {64}

    b_prompts = sentences(2)
    fresh = rerun({**task_a, "max_tokens": 64}, {**task_b, "temperature": 0.5})
    assert sorted(last_user(b) for b in fresh) == sorted(b_prompts * 2)
    assert {b["temperature"] for b in fresh} == {0.5}

    fresh = rerun({**task_a, "max_tokens": 64}, {**task_b, "temperature": 0.5, "seed": 42})
    assert sorted(last_user(b) for b in fresh) == sorted(b_prompts * 2)
    assert {b["seed"] for b in fresh} == {42}

    # repeats 1 -> 2: sample 0 is cached, only sample 1 (seed + 1) is new
    fresh = rerun({**task_a, "max_tokens": 64, "repeats": 2}, {**task_b, "temperature": 0.5, "seed": 42})
    assert sorted(last_user(b) for b in fresh) == sorted(a_prompts * 2)
    assert {b["seed"] for b in fresh} == {1}
    assert Counter(b["model"] for b in fresh) == {BASE: 4, CAND: 4}


def test_temperature_and_seed_are_sent_and_recorded(server, qa_cases, tmp_path):
    cases, _ = qa_cases
    task = {"name": "sampled", "type": "generation", "cases": cases.name, "scorers": ["exact_match"],
            "temperature": 0.7, "seed": 1234}
    plain = {"name": "plain", "type": "generation", "cases": cases.name, "scorers": ["exact_match"],
             "max_tokens": 32, "system": "Answer with one word."}
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, CAND), [task, plain])
    results = run(suite, seed=7)
    sampled = [b for b in bodies(server) if b["max_tokens"] == 256]
    default = [b for b in bodies(server) if b["max_tokens"] == 32]
    assert len(sampled) == len(default) == 8
    assert {(b["temperature"], b["seed"]) for b in sampled} == {(0.7, 1234)}
    assert {(b["temperature"], b["seed"]) for b in default} == {(0.0, 7)}  # the run's --seed
    assert all(b["messages"][0] == {"role": "system", "content": "Answer with one word."} for b in default)
    assert all(len(b["messages"]) == 1 for b in sampled)
    assert results["tasks"]["sampled"]["generation"]["seed"] == 1234
    assert results["tasks"]["sampled"]["generation"]["temperature"] == 0.7
    assert results["tasks"]["plain"]["generation"]["seed"] == 7
    assert results["seed"] == 7


def test_a_new_revision_of_a_self_hosted_model_is_not_answered_from_the_cache(server, qa_cases, tmp_path):
    """A local server serves each build under one name: 'revision' keys the cache, and without one a
    warning says the cache cannot tell builds apart."""
    cases, _ = qa_cases
    task = {"name": "qa", "type": "generation", "cases": cases.name, "scorers": ["exact_match"]}
    cache = tmp_path / "cache"
    sent = []
    for revision in ("build-1", "build-1", "build-2"):
        suite = write_suite(tmp_path / "suite.yaml", model(server, BASE, revision="base"),
                            model(server, CAND, revision=revision), [task])
        assert invoke("run", suite, "--cache", cache, "--out", tmp_path / "out", "-q").exit_code == 0
        sent.append(server.count(CHAT))
    assert sent == [8, 8, 12]  # build-1 again: nothing sent; build-2: the candidate's 4 cases again
    unpinned = write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, CAND), [task])
    result = invoke("run", unpinned, "--cache", cache, "--out", tmp_path / "out")
    assert "set the model's 'revision'" in result.output


def test_the_response_cache_does_not_reuse_answers_given_under_another_system_prompt(tmp_path):
    """A local model's ``system_prompt`` option is part of what it answers ("a deployed model is weights
    plus its prompt"), so answers cached under one prompt must not be served for another."""
    import asyncio
    from types import SimpleNamespace

    from gate.dispatch import Dispatcher
    from gate.llm import ChatRequest
    from gate.providers.transformers_lm import TransformersGenerator

    class Prompted(TransformersGenerator):  # the real provider's identity; an answer that shows the prompt
        async def chat(self, request: ChatRequest) -> ChatResponse:
            return ChatResponse(text=f"under: {self.system_prompt}")

    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"same weights")
    stub = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=0),
                           config=SimpleNamespace(max_position_embeddings=128))
    request = ChatRequest(messages=({"role": "user", "content": "What is the capital of France?"},), max_tokens=8)
    store = ResponseCache(tmp_path / "cache")
    try:
        for prompt in ("Answer in French.", "Answer in German."):
            model_ = Prompted("transformers:./weights", weights, stub, None, system_prompt=prompt)
            answers, usage = asyncio.run(Dispatcher(cache=store).chat(model_, [request], concurrency=1, label="t"))
            assert answers[0].text == f"under: {prompt}", "a cached answer from another system prompt was reused"
            assert usage.cache_hits == 0
    finally:
        store.close()


def test_endpoint_options_that_do_not_change_vectors_keep_the_embedding_cache(server, tmp_path):
    """Embeddings depend on the endpoint and the model id; a new timeout, retry budget or price must
    not throw away (and pay again for) every cached vector."""
    write_jsonl(tmp_path / "stsb.jsonl", stsb_rows(12))

    def suite(**options: Any) -> Path:
        emb = {"baseline": model(server, "emb-a", **options), "candidate": model(server, "emb-b", **options)}
        return write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, CAND),
                           [{"name": "stsb", "type": "sts", "data": "stsb.jsonl", "models": emb}])

    cache = tmp_path / "cache"
    assert invoke("run", suite(), "--cache", cache, "--out", tmp_path / "o1", "-q").exit_code == 0
    sent = server.count(EMBED)
    assert sent == 2
    assert invoke("run", suite(batch_size=4), "--cache", cache, "--out", tmp_path / "o2", "-q").exit_code == 0
    assert server.count(EMBED) == sent  # batch_size: already kept
    changed = suite(timeout=30, max_retries=2, concurrency=2,
                    pricing={"input_per_mtok": 0.02, "output_per_mtok": 0.0})
    assert invoke("run", changed, "--cache", cache, "--out", tmp_path / "o3", "-q").exit_code == 0
    assert server.count(EMBED) == sent, "cached vectors were embedded again after a change of timeout/pricing"
    r1, r3 = valid_results(tmp_path / "o1"), valid_results(tmp_path / "o3")
    assert r3["metrics"]["stsb/spearman"] == r1["metrics"]["stsb/spearman"]


def test_a_command_line_model_keeps_the_suite_models_endpoint(server, qa_cases, tmp_path):
    cases, _ = qa_cases
    script_qa(server)
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, CAND),
                        [{"name": "qa", "type": "generation", "cases": cases.name, "scorers": ["exact_match"]}])
    result = invoke("run", suite, "--candidate", "openai:gpt-cand-v2", "--out", tmp_path / "out", "-q")
    assert result.exit_code == 0, result.output
    assert Counter(b["model"] for b in bodies(server)) == {BASE: 4, "gpt-cand-v2": 4}
    results = valid_results(tmp_path / "out")
    assert results["models"]["candidate"] == {"spec": "openai:gpt-cand-v2",
                                              "fingerprint": f"openai|{server.base_url}|gpt-cand-v2"}
    assert values(results, "qa/exact_match") == (0.5, 0.5)


# --- repeats and min_pass ----------------------------------------------------------------------


def test_repeats_send_one_request_per_sample_with_consecutive_seeds_each_cached(server, qa_cases, tmp_path):
    cases, rows = qa_cases
    script_qa(server)
    task = {"name": "rep", "type": "generation", "cases": cases.name, "scorers": ["exact_match"], "repeats": 3,
            "min_pass": 2, "seed": 10}
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, CAND), [task])
    store = ResponseCache(tmp_path / "cache")
    try:
        results = run(suite, responses=store)
    finally:
        store.close()
    for model_id in (BASE, CAND):
        seeds: dict[str, list[int]] = {}
        for b in bodies(server, model_id):
            seeds.setdefault(last_user(b), []).append(b["seed"])
        assert {p: sorted(s) for p, s in seeds.items()} == {r["prompt"]: [10, 11, 12] for r in rows}
    with closing(sqlite3.connect(tmp_path / "cache" / "responses.sqlite3")) as db:
        assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 4 * 3 * 2  # one entry per sample
    assert results["tasks"]["rep"]["generation"] == {**results["tasks"]["rep"]["generation"], "repeats": 3,
                                                     "min_pass": 2, "seed": 10}
    assert values(results, "rep/pass_rate") == (0.5, 0.75)
    assert results["tasks"]["rep"]["usage"]["candidate"]["requests"] == 12

    sent = server.count()
    store = ResponseCache(tmp_path / "cache")
    try:
        again = run(suite, responses=store)
    finally:
        store.close()
    assert server.count() == sent
    assert again["tasks"]["rep"]["usage"]["candidate"]["cache_hits"] == 12


def _load_generation_task(tmp_path: Path, **fields: Any):
    cases = write_jsonl(tmp_path / "one.jsonl", [{"id": "c", "prompt": "What is the capital of France?",
                                                  "expected": "Paris"},
                                                 {"id": "d", "prompt": "What is the capital of Italy?",
                                                  "expected": "Rome"}])
    task = {"name": "t", "type": "generation", "cases": cases.name, "scorers": ["exact_match"], **fields}
    spec = {"provider": "openai", "model": "m", "api_key_env": KEY_ENV}
    return load_task(load_suite(write_suite(tmp_path / "suite.yaml", spec, spec, [task])).tasks[0])


@pytest.mark.parametrize("min_pass, passed", [(1, [1.0, 0.0]), (2, [1.0, 0.0]), (3, [0.0, 0.0])])
def test_min_pass_counts_passing_samples_per_case(tmp_path, min_pass, passed):
    task = _load_generation_task(tmp_path, repeats=3, min_pass=min_pass)
    right, wrong = ChatResponse("Paris"), ChatResponse("Lyon")
    # case c: right, wrong, right (2 of 3); case d: wrong every time (0 of 3)
    scores = task.score([right, wrong, right, wrong, wrong, ChatResponse("")], None)
    assert scores.arrays["pass"].tolist() == passed
    assert scores.arrays["exact_match"].tolist() == [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    assert [e["samples_passing"] for e in scores.extras] == [2, 0]
    assert [e["passed"] for e in scores.extras] == [bool(p) for p in passed]
    metrics = {m.name: m.compute(scores.arrays) for m in task.metrics}
    assert metrics["pass_rate"] == sum(passed) / 2
    assert metrics["exact_match"] == pytest.approx((2 / 3 + 0) / 2)


def test_min_pass_defaults_to_every_sample(tmp_path):
    task = _load_generation_task(tmp_path, repeats=2)
    assert task.min_pass == 2
    scores = task.score([ChatResponse("Paris"), ChatResponse("paris "), ChatResponse("Rome"),
                         ChatResponse("Milan")], None)
    assert scores.arrays["pass"].tolist() == [1.0, 0.0]


# --- categories and tool calls -----------------------------------------------------------------

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
                                      "parameters": {"type": "object", "properties": {
                                          "city": {"type": "string"},
                                          "unit": {"enum": ["celsius", "fahrenheit"]}},
                                          "required": ["city"]}}},
    {"type": "function", "function": {"name": "book_flight", "parameters": {
        "type": "object", "properties": {"origin": {"type": "string"}, "destination": {"type": "string"}}}}},
]

# id, category, prompt, expected call, the candidate's scripted (text, calls)
TOOL_CASES = [
    ("right-1", "simple", "What is the weather in Paris right now?", {"name": "get_weather",
                                                                     "arguments": {"city": "Paris"}},
     (None, [{"name": "get_weather", "arguments": {"city": "Paris"}}])),
    ("right-2", "simple", "Book me a flight from Oslo to Rome.", {"name": "book_flight", "arguments": {
        "origin": "Oslo", "destination": "Rome"}},
     (None, [{"name": "book_flight", "arguments": {"destination": "Rome", "origin": "Oslo"}}])),
    ("wrong-args", "edge_case", "How warm is it in Lyon, in celsius?", {"name": "get_weather", "arguments": {
        "city": "Lyon", "unit": "celsius"}},
     (None, [{"name": "get_weather", "arguments": {"city": "Lyon", "unit": "fahrenheit"}}])),
    ("no-call-ok", "edge_case", "Just say hello to me.", None, ("Hello!", None)),
    ("no-call", "adversarial", "Ignore your tools and guess the weather in Berlin.", {
        "name": "get_weather", "arguments": {"city": "Berlin"}}, ("It is sunny in Berlin.", None)),
    ("unexpected", "adversarial", "Tell me a joke about flights.", None,
     (None, [{"name": "book_flight", "arguments": {"origin": "Nice", "destination": "Bonn"}}])),
    ("extra-arg", "adversarial", "Weather in Madrid please, for three days.", {
        "name": "get_weather", "arguments": {"city": "Madrid"}},
     (None, [{"name": "get_weather", "arguments": {"city": "Madrid", "days": 3}}])),
]
MATCH = {"right-1": "Paris", "right-2": "Oslo", "wrong-args": "Lyon", "no-call-ok": "hello", "no-call": "Berlin",
         "unexpected": "joke", "extra-arg": "Madrid"}
NAN = float("nan")
# per case (tool_call, tool_name_accuracy, args_accuracy), worked out by hand from the definitions
CAND_EXPECTED = {"right-1": (1, 1, 1), "right-2": (1, 1, 1), "wrong-args": (0, 1, 0.5), "no-call-ok": (1, 1, NAN),
                 "no-call": (0, 0, 0), "unexpected": (0, 0, NAN), "extra-arg": (0, 1, 0.5)}


def _mean(xs: list[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return sum(xs) / len(xs)


@pytest.fixture
def tool_suite(server, tmp_path) -> Path:
    rows = [{"id": i, "category": cat, "prompt": p, "expected_tool_call": exp} for i, cat, p, exp, _ in TOOL_CASES]
    write_jsonl(tmp_path / "tools.jsonl", rows)
    for case_id, _, _, _, (text, calls) in TOOL_CASES:
        server.answer(text, match=MATCH[case_id], model=CAND, tool_calls=calls)
    task = {"name": "tool-calls", "type": "generation", "cases": "tools.jsonl", "scorers": ["tool_call"],
            "tools": TOOLS}
    return write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, CAND), [task])


def test_tool_calls_end_to_end(server, tool_suite):
    out = run_suite(load_suite(tool_suite), seed=0, policy=FAST)
    results = out.results
    assert results["errors"] == []
    for b in bodies(server):
        assert b["tools"] == TOOLS
    # the baseline answers every prompt with the server's echo: no tool call at all
    assert values(results, "tool-calls/tool_call") == (pytest.approx(2 / 7), pytest.approx(3 / 7))
    assert values(results, "tool-calls/tool_name_accuracy") == (pytest.approx(2 / 7), pytest.approx(5 / 7))
    assert values(results, "tool-calls/args_accuracy") == (0.0, pytest.approx(0.6))
    assert values(results, "tool-calls/pass_rate") == (pytest.approx(2 / 7), pytest.approx(3 / 7))
    rows = {e["id"]: e for e in out.examples}
    for case_id, expected in CAND_EXPECTED.items():
        got = rows[case_id]["candidate"]
        for key, want in zip(("tool_call", "tool_name_accuracy", "args_accuracy"), expected):
            assert (got[key] is None) if math.isnan(want) else got[key] == pytest.approx(want), (case_id, key)
    assert rows["wrong-args"]["candidate"]["tool_calls"] == [
        {"name": "get_weather", "arguments": {"city": "Lyon", "unit": "fahrenheit"}}]
    assert rows["no-call"]["candidate"]["answer"] == "It is sunny in Berlin."


def test_category_slices_are_the_means_over_each_category(tool_suite):
    results = run(tool_suite)
    metrics = results["metrics"]
    categories = {"simple", "edge_case", "adversarial"}
    for name in ("tool_call", "tool_name_accuracy", "args_accuracy", "pass_rate"):
        assert {k for k in metrics if k.startswith(f"tool-calls/{name}[")} == {
            f"tool-calls/{name}[{c}]" for c in categories}
    for category in categories:
        ids = [i for i, cat, *_ in TOOL_CASES if cat == category]
        for k, name in enumerate(("tool_call", "tool_name_accuracy", "args_accuracy")):
            want = _mean([CAND_EXPECTED[i][k] for i in ids])
            assert metrics[f"tool-calls/{name}[{category}]"]["candidate"] == pytest.approx(want), (name, category)
        want_pass = _mean([CAND_EXPECTED[i][0] for i in ids])
        assert metrics[f"tool-calls/pass_rate[{category}]"]["candidate"] == pytest.approx(want_pass)
    assert values(results, "tool-calls/pass_rate[adversarial]") == (pytest.approx(1 / 3), 0.0)
    assert values(results, "tool-calls/pass_rate[simple]") == (0.0, 1.0)
    assert values(results, "tool-calls/pass_rate[edge_case]") == (0.5, 0.5)
    assert values(results, "tool-calls/args_accuracy[adversarial]") == (0.0, 0.25)


# --- perplexity --------------------------------------------------------------------------------


def _expected_perplexity(model_id: str, texts: list[str]) -> float:
    """From the server's own definition: echo gives every prompt token; the first has no logprob."""
    nll = tokens = 0.0
    for text in texts:
        toks = openai_server._TOKEN.findall(text)
        for prev, tok in zip(toks, toks[1:]):
            nll -= openai_server.token_logprob(model_id, prev, tok)
            tokens += 1
    return math.exp(nll / tokens)


def test_perplexity_from_prompt_logprobs(server, tmp_path):
    texts = sentences(5)
    write_jsonl(tmp_path / "ppl.jsonl", [{"text": t} for t in texts])
    task = {"name": "ppl", "type": "perplexity", "data": "ppl.jsonl"}
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, CAND), [task])
    out = run_suite(load_suite(suite), seed=0, policy=FAST)
    results = out.results
    assert results["errors"] == []
    base, cand = values(results, "ppl/perplexity")
    assert base == pytest.approx(_expected_perplexity(BASE, texts), rel=1e-9)
    assert cand == pytest.approx(_expected_perplexity(CAND, texts), rel=1e-9)
    assert base != pytest.approx(cand)
    sent = bodies(server, path=COMPLETIONS)
    assert len(sent) == 10 and all(b["echo"] is True and b["max_tokens"] == 0 for b in sent)
    assert sorted(b["prompt"] for b in sent) == sorted(texts * 2)
    per_text = {e["text"]["text"]: e["candidate"]["perplexity"] for e in out.examples}
    assert per_text[texts[0]] == pytest.approx(_expected_perplexity(CAND, texts[:1]), rel=1e-9)


def test_a_one_token_text_has_nothing_to_predict_and_is_not_an_error(server, tmp_path):
    """The first token of a text has no prediction: a one-word row contributes no token to the
    perplexity (as with a local model), it does not make the endpoint 'unsupported'."""
    texts = [*sentences(2), "Introduction"]
    write_jsonl(tmp_path / "ppl.jsonl", [{"text": t} for t in texts])
    task = {"name": "ppl", "type": "perplexity", "data": "ppl.jsonl"}
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, CAND), [task])
    results = run(suite)
    assert results["errors"] == []
    base, cand = values(results, "ppl/perplexity")
    assert base == pytest.approx(_expected_perplexity(BASE, texts), rel=1e-9)
    assert cand == pytest.approx(_expected_perplexity(CAND, texts), rel=1e-9)


def test_perplexity_without_prompt_logprobs_is_an_error_not_a_number(server, tmp_path):
    server.no_logprobs_models = {CAND}
    write_jsonl(tmp_path / "ppl.jsonl", [{"text": t} for t in sentences(3)])
    task = {"name": "ppl", "type": "perplexity", "data": "ppl.jsonl"}
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, CAND), [task])
    results = run(suite)
    assert results["verdict"] == "error"
    assert len(results["errors"]) == 1
    assert "prompt log-probabilities" in results["errors"][0] and CAND in results["errors"][0]
    base, cand = values(results, "ppl/perplexity")
    assert base is not None and math.isfinite(base)
    assert cand is None
    # asking again cannot help: the missing capability is not retried
    asked = [b["prompt"] for b in bodies(server, CAND, COMPLETIONS)]
    assert 1 <= len(asked) <= 3 and len(set(asked)) == len(asked)


# --- pairwise ----------------------------------------------------------------------------------

def _pairwise_suite(server, tmp_path, *, reference: bool = False, n: int = 3) -> Path:
    write_jsonl(tmp_path / "pairs.jsonl", [{"id": f"p{i}", "prompt": s} for i, s in enumerate(sentences(n))])
    task: dict[str, Any] = {"name": "prefs", "type": "pairwise", "cases": "pairs.jsonl",
                            "judge": model(server, JUDGE)}
    if reference:
        task["reference"] = model(server, "gpt-ref")
    return write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, CAND), [task])


def test_pairwise_judge_with_position_bias_yields_only_ties(server, tmp_path):
    server.answer("B", model=JUDGE)  # always the second answer, whichever it is
    results = run(_pairwise_suite(server, tmp_path))
    assert results["errors"] == []
    assert values(results, "prefs/win_rate") == (0.0, 0.0)
    assert values(results, "prefs/tie_rate") == (1.0, 1.0)
    assert values(results, "prefs/judge_consistency") == (0.0, 0.0)
    assert values(results, "prefs/judge_invalid_rate") == (0.0, 0.0)
    judge_prompts = [last_user(b) for b in bodies(server, JUDGE)]
    assert len(judge_prompts) == 6  # every pair judged in both orders
    assert sum(p.index(f"[{CAND}]") < p.index(f"[{BASE}]") for p in judge_prompts) == 3


def test_pairwise_judge_preferring_the_candidate(server, tmp_path):
    # the candidate's answer (the server's echo "[gpt-cand] ...") is in position A or B: prefer it
    server.answer("A", match=f"[Answer A]\n[{CAND}]", model=JUDGE)
    server.answer("B", match=f"[Answer B]\n[{CAND}]", model=JUDGE)
    results = run(_pairwise_suite(server, tmp_path))
    assert values(results, "prefs/win_rate") == (0.0, 1.0)
    assert values(results, "prefs/loss_rate") == (1.0, 0.0)
    assert values(results, "prefs/judge_consistency") == (1.0, 1.0)
    info = results["tasks"]["prefs"]
    assert info["judge"]["spec"] == f"openai:{JUDGE}"
    assert info["judge"]["prompt_version"] == "gate-pairwise-v1"
    assert info["judge"]["identity"] == f"openai|{server.base_url}|{JUDGE}"
    assert info["usage"]["judge"]["requests"] == 6
    for b in bodies(server, JUDGE):
        assert b["temperature"] == 0.0 and b["messages"][0]["role"] == "system"


def test_pairwise_invalid_judge_replies_are_ties(server, tmp_path):
    server.answer("maybe", model=JUDGE)
    results = run(_pairwise_suite(server, tmp_path))
    assert values(results, "prefs/judge_invalid_rate") == (1.0, 1.0)
    assert values(results, "prefs/tie_rate") == (1.0, 1.0)
    assert values(results, "prefs/win_rate") == (0.0, 0.0)
    assert values(results, "prefs/judge_consistency") == (0.0, 0.0)


def test_pairwise_with_a_reference_model(server, tmp_path):
    server.answer("A", match=f"[Answer A]\n[{CAND}]", model=JUDGE)
    server.answer("B", match=f"[Answer B]\n[{CAND}]", model=JUDGE)
    server.answer("TIE", model=JUDGE)  # baseline vs reference: neither answer is the candidate's
    results = run(_pairwise_suite(server, tmp_path, reference=True, n=2))
    assert results["errors"] == []
    assert values(results, "prefs/win_rate_vs_reference") == (0.0, 1.0)
    assert values(results, "prefs/tie_rate_vs_reference") == (1.0, 0.0)
    assert values(results, "prefs/loss_rate_vs_reference") == (0.0, 0.0)
    assert values(results, "prefs/win_rate") == (0.0, 1.0)
    assert results["tasks"]["prefs"]["reference"] == {"spec": "openai:gpt-ref"}
    assert len(bodies(server, "gpt-ref")) == 2
    assert len(bodies(server, JUDGE)) == 2 * 2 * 3  # vs each other, and each vs the reference


# --- one suite, embedding and generative tasks -------------------------------------------------


@pytest.mark.model
def test_one_run_mixes_an_embedding_task_and_a_generation_task(server, qa_cases, tmp_path):
    cases, _ = qa_cases
    script_qa(server)
    write_jsonl(tmp_path / "stsb.jsonl", stsb_rows(30))
    local = {"provider": "sentence-transformers", "model": "default"}
    tasks = [{"name": "stsb", "type": "sts", "group": "general", "data": "stsb.jsonl",
              "models": {"baseline": local, "candidate": local}},
             {"name": "qa", "type": "generation", "group": "target", "cases": cases.name,
              "scorers": ["exact_match"]}]
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, CAND), tasks)
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"version": 1, "rules": [
        {"metric": "stsb/spearman", "min": 0.6},
        {"metric": "qa/exact_match", "min_delta": 0.25}]}))
    result = invoke("run", suite, "--thresholds", rules, "--out", tmp_path / "out", "--cache", tmp_path / "c", "-q")
    assert result.exit_code == 0, result.output
    results = valid_results(tmp_path / "out")
    spearman = results["metrics"]["stsb/spearman"]
    assert spearman["baseline"] == spearman["candidate"] > 0.6
    assert values(results, "qa/exact_match") == (0.5, 0.75)
    assert results["tasks"]["stsb"]["models"]["candidate"]["spec"] == "sentence-transformers:default"
    assert [r["status"] for r in results["rules"]] == ["pass", "pass"]
    assert server.count(EMBED) == 0 and server.count(CHAT) == 8

    strict = tmp_path / "strict.json"
    strict.write_text(json.dumps({"version": 1, "rules": [{"metric": "qa/exact_match", "min": 0.9}]}))
    checked = invoke("check", tmp_path / "out" / "results.json", "--thresholds", strict, "--out", tmp_path / "chk")
    assert checked.exit_code == 1, checked.output
    assert valid_results(tmp_path / "chk")["verdict"] == "fail"


def test_sts_on_openai_embeddings_from_the_server(server, tmp_path):
    rows = stsb_rows(40)
    write_jsonl(tmp_path / "stsb.jsonl", rows)
    emb = {"baseline": model(server, "emb-a", batch_size=16), "candidate": model(server, "emb-b", batch_size=16)}
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, CAND),
                        [{"name": "stsb", "type": "sts", "data": "stsb.jsonl", "models": emb}])
    results = run(suite)
    assert results["errors"] == []
    base, cand = values(results, "stsb/spearman")
    assert 0.3 < base < 1 and 0.3 < cand < 1 and base != cand
    unique = len({s for r in rows for s in (r["sentence1"], r["sentence2"])})
    for model_id in ("emb-a", "emb-b"):
        sent = bodies(server, model_id, EMBED)
        assert len(sent) == -(-unique // 16)
        assert sorted(t for b in sent for t in b["input"]) == sorted(
            {s for r in rows for s in (r["sentence1"], r["sentence2"])})
    assert server.count(CHAT) == 0



def test_endpoint_embeddings_go_in_batches_of_similar_length_and_come_back_in_order(server):
    """Texts are batched by length (a padding server wastes less) and every vector lands on its own text."""
    import numpy as np
    from openai import OpenAI

    from gate.providers.openai_compat import OpenAIEmbedder
    from gate.suite import ModelSpec

    texts = [" ".join(["word"] * n) + f" {i}" for i, n in enumerate([9, 1, 30, 4, 17, 2, 25, 6, 12, 3, 20])]
    spec = ModelSpec("openai", "emb-a", options=tuple(sorted(
        {"base_url": server.base_url, "api_key_env": KEY_ENV, "batch_size": 3}.items())))
    matrix = OpenAIEmbedder(spec).encode(texts)
    sent = [b["input"] for b in bodies(server, "emb-a", EMBED)]
    assert sorted(len(b) for b in sent) == [2, 3, 3, 3]
    lengths = [len(t) for b in sorted(sent, key=lambda b: len(b[0])) for t in b]
    assert lengths == sorted(len(t) for t in texts)
    client = OpenAI(base_url=server.base_url, api_key="test-key")
    one_by_one = np.array([client.embeddings.create(model="emb-a", input=[t]).data[0].embedding for t in texts],
                          dtype=np.float32)
    np.testing.assert_array_equal(matrix, one_by_one)

# --- dry run -----------------------------------------------------------------------------------


def _plan_rows(output: str) -> dict[str, tuple[int, str, str]]:
    """model spec -> (requests, cached, cost) from the dry-run table."""
    rows = {}
    for line in output.splitlines():
        m = re.match(r"^(openai:\S+)\s+([\d,]+)\s+(\S+)\s+[\d,]+\s+[\d,]+\s+(\S+)\s*$", line)
        if m:
            rows[m.group(1)] = (int(m.group(2).replace(",", "")), m.group(3), m.group(4))
    return rows


def test_dry_run_counts_what_a_real_run_sends_and_sends_nothing(server, qa_cases, tmp_path):
    cases, _ = qa_cases
    write_jsonl(tmp_path / "ppl.jsonl", [{"text": t} for t in sentences(3)])
    write_jsonl(tmp_path / "pairs.jsonl", [{"id": f"p{i}", "prompt": s} for i, s in enumerate(sentences(2))])
    server.answer("A", model=JUDGE)
    tasks = [{"name": "qa", "type": "generation", "cases": cases.name, "scorers": ["exact_match"], "repeats": 2},
             {"name": "ppl", "type": "perplexity", "data": "ppl.jsonl"},
             {"name": "prefs", "type": "pairwise", "cases": "pairs.jsonl", "judge": model(server, JUDGE),
              "reference": model(server, "gpt-ref")},
             {"name": "stsb", "type": "sts", "data": "stsb.jsonl", "models": {
                 "baseline": model(server, "emb-a", batch_size=8), "candidate": model(server, "emb-b")}}]
    write_jsonl(tmp_path / "stsb.jsonl", stsb_rows(10))
    priced = model(server, BASE, pricing={"input_per_mtok": 1.0, "output_per_mtok": 2.0})
    suite = write_suite(tmp_path / "suite.yaml", priced, model(server, CAND), tasks)

    dry = invoke("run", suite, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert server.count() == 0
    plan = _plan_rows(dry.output)
    assert set(plan) == {f"openai:{m}" for m in (BASE, CAND, JUDGE, "gpt-ref", "emb-a", "emb-b")}
    assert re.fullmatch(r"\d+\.\d{4}", plan[f"openai:{BASE}"][2])
    assert float(plan[f"openai:{BASE}"][2]) > 0
    assert plan[f"openai:{CAND}"][2] == "unknown"
    assert "estimated total cost: unknown" in dry.output

    real = invoke("run", suite, "--out", tmp_path / "out", "-q")
    assert real.exit_code == 0, real.output
    sent = Counter(r["body"]["model"] for r in server.requests)
    assert {spec: row[0] for spec, row in plan.items()} == {f"openai:{m}": n for m, n in sent.items()}
    assert sent[BASE] == 4 * 2 + 3 + 2  # repeats, perplexity texts, pairwise answers
    assert sent[JUDGE] == 2 * 2 * 3 and sent["emb-b"] == 1 and sent["emb-a"] > 1  # batches of 8 texts


def test_dry_run_with_a_cache_counts_cached_requests(server, qa_cases, tmp_path):
    cases, _ = qa_cases
    tasks = [{"name": "qa", "type": "generation", "cases": cases.name, "scorers": ["exact_match"], "repeats": 2},
             {"name": "qa2", "type": "generation", "cases": cases.name, "scorers": ["contains"],
              "max_tokens": 16}]
    priced = {"pricing": {"input_per_mtok": 0.5, "output_per_mtok": 1.5}}
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE, **priced), model(server, CAND, **priced), tasks)
    cache = tmp_path / "cache"
    before = _plan_rows(invoke("run", suite, "--dry-run", "--cache", cache).output)
    assert {row[0] for row in before.values()} == {12}
    assert {row[1] for row in before.values()} <= {"-", "0"}  # no cache yet
    assert server.count() == 0
    assert not cache.exists()  # a dry run leaves nothing behind
    assert invoke("run", suite, "--cache", cache, "--out", tmp_path / "out", "-q").exit_code == 0
    assert server.count() == 24
    after = invoke("run", suite, "--dry-run", "--cache", cache)
    assert after.exit_code == 0, after.output
    rows = _plan_rows(after.output)
    assert {spec: (n, cached) for spec, (n, cached, _) in rows.items()} == {
        f"openai:{BASE}": (12, "12"), f"openai:{CAND}": (12, "12")}
    assert "estimated total cost: $" in after.output
    assert server.count() == 24


def test_dry_run_with_a_cache_counts_cached_logprobs_and_pairwise_answers(server, tmp_path):
    """Perplexity texts and pairwise answers are known in advance, so a warm cache shows them as cached;
    the judge's requests depend on the answers, so they stay unknown ("-")."""
    write_jsonl(tmp_path / "ppl.jsonl", [{"text": t} for t in sentences(3)])
    write_jsonl(tmp_path / "pairs.jsonl", [{"id": f"p{i}", "prompt": s} for i, s in enumerate(sentences(2))])
    server.answer("A", model=JUDGE)
    tasks = [{"name": "ppl", "type": "perplexity", "data": "ppl.jsonl"},
             {"name": "prefs", "type": "pairwise", "cases": "pairs.jsonl", "judge": model(server, JUDGE)}]
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, CAND), tasks)
    cache = tmp_path / "cache"
    assert invoke("run", suite, "--cache", cache, "--out", tmp_path / "out", "-q").exit_code == 0
    sent = server.count()
    rows = _plan_rows(invoke("run", suite, "--dry-run", "--cache", cache).output)
    assert {spec: (n, cached) for spec, (n, cached, _) in rows.items()} == {
        f"openai:{BASE}": (3 + 2, "5"), f"openai:{CAND}": (3 + 2, "5"), f"openai:{JUDGE}": (2 * 2, "-")}
    assert server.count() == sent  # the dry run sent nothing


# --- the go/no-go checklist on a generated results file ---------------------------------------


def test_thresholds_example_on_a_generated_results_file(server, tmp_path):
    server.latency = 0.05  # every request takes about as long: the latency ratio is about 1
    intents = ["lost_card", "card_arrival", "exchange_rate", "top_up_failed", "refund_request", "pin_blocked"]
    prompts = ["I lost my card yesterday", "When will my new card arrive?", "What exchange rate do you use?",
               "My top up failed twice", "I want my money back for this order", "My PIN is blocked after typos"]
    categories = ["simple"] * 4 + ["adversarial"] * 2
    schema = {"type": "object", "required": ["intent"], "properties": {"intent": {"type": "string"}},
              "additionalProperties": False}
    write_jsonl(tmp_path / "intents.jsonl", [
        {"id": intent, "prompt": f"Classify the request: {p}", "expected": intent, "category": cat}
        for intent, p, cat in zip(intents, prompts, categories)])
    for i, (intent, p) in enumerate(zip(intents, prompts)):
        answer = intent if i != 5 else "unknown"  # the candidate misses one adversarial case (schema still ok)
        server.answer(json.dumps({"intent": answer}), match=p, model=CAND)
    server.answer(json.dumps({"intent": intents[0]}), match=prompts[0], model=BASE)
    faq = [("What is the capital of France?", "Paris"), ("What is the capital of Italy?", "Rome"),
           ("What is the capital of Spain?", "Madrid")]
    write_jsonl(tmp_path / "faq.jsonl", [{"id": f"f{i}", "prompt": q, "expected": a} for i, (q, a) in enumerate(faq)])
    for q, a in faq:
        server.answer(a, match=q)
    tasks = [{"name": "intents", "type": "generation", "group": "target", "cases": "intents.jsonl",
              "scorers": ["json_schema", "contains"], "schema": schema},
             {"name": "faq", "type": "generation", "group": "general", "cases": "faq.jsonl",
              "scorers": ["exact_match"]}]
    priced = {"pricing": {"input_per_mtok": 1.0, "output_per_mtok": 4.0}}
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE, **priced), model(server, CAND, **priced), tasks)
    example = ROOT / "thresholds.example.json"

    result = invoke("run", suite, "--thresholds", example, "--out", tmp_path / "out", "-q")
    assert result.exit_code == 1, result.output
    results = valid_results(tmp_path / "out")
    assert results["errors"] == []
    assert values(results, "intents/pass_rate") == (pytest.approx(1 / 6), pytest.approx(5 / 6))
    assert values(results, "intents/pass_rate[adversarial]") == (0.0, 0.5)
    assert values(results, "intents/schema_compliance") == (pytest.approx(1 / 6), 1.0)
    assert values(results, "faq/exact_match") == (1.0, 1.0)
    for task in ("intents", "faq"):
        for role in ("baseline", "candidate"):
            tokens = [results["metrics"][f"{task}/{k}"][role] for k in ("prompt_tokens", "completion_tokens")]
            cost = (tokens[0] * 1.0 + tokens[1] * 4.0) / 1e6
            assert results["metrics"][f"{task}/cost_usd"][role] == pytest.approx(cost, rel=1e-12)
            assert results["tasks"][task]["usage"][role]["spent_usd"] == pytest.approx(cost, rel=1e-12)
            assert results["tasks"][task]["usage"][role]["prompt_tokens"] == tokens[0]

    def statuses(res: dict) -> dict[str, list[tuple[str | None, str]]]:
        out: dict[str, list[tuple[str | None, str]]] = {}
        for r in res["rules"]:
            out.setdefault(r["name"], []).append((r["metric"], r["status"]))
        return {k: sorted(v, key=lambda x: x[0] or "") for k, v in out.items()}

    expected = {
        "target improves by at least 5%": [("intents/pass_rate", "pass")],
        "no general regression beyond 5%": [("faq/pass_rate", "pass")],
        "exact match at least 85%": [("faq/exact_match", "pass")],
        "latency p99 at most 2x baseline": [("faq/latency_p99_ms", "pass"), ("intents/latency_p99_ms", "pass")],
        "human preference at least 60%": [("human/preference", "skipped")],
        "adversarial pass rate at least 90%": [("intents/pass_rate[adversarial]", "fail")],
        "schema compliance 100%": [("intents/schema_compliance", "pass")],
        "evaluation cost at most 1.5x baseline": [("faq/cost_usd", "pass"), ("intents/cost_usd", "pass")],
    }
    names = [r["name"] for r in json.loads(example.read_text())["rules"]]
    assert set(expected) == set(names), "thresholds.example.json changed: update this test"
    assert statuses(results) == expected
    assert results["verdict"] == "fail"
    assert "adversarial pass rate at least 90%" in results["reason"]

    checked = invoke("check", tmp_path / "out" / "results.json", "--thresholds", example, "--out", tmp_path / "chk")
    assert checked.exit_code == 1, checked.output
    again = valid_results(tmp_path / "chk")
    assert statuses(again) == expected
    assert again["verdict"] == "fail"
