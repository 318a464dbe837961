"""Generative tasks when things go wrong: transient faults survived with the real ``openai`` SDK,
persistent and fatal faults ending in ``error`` (never ``pass``), and bad input refused with exit 2
before a single request is sent. Driven against the local OpenAI-compatible test server."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

from gate.cache import ResponseCache
from gate.cli import cli
from gate.dispatch import RetryPolicy
from gate.runner import run_suite
from gate.suite import load_suite

from tests.conftest import valid_results, write_jsonl

try:
    from tests import openai_server
    from tests.openai_server import OpenAIServer, suite_model
except ModuleNotFoundError:  # run as `pytest`, not `python -m pytest`
    import openai_server  # type: ignore[no-redef]
    from openai_server import OpenAIServer, suite_model  # type: ignore[no-redef]

KEY_ENV = "GATE_GEN_TEST_API_KEY"
CHAT = "/v1/chat/completions"
EMBED = "/v1/embeddings"
STSB = Path(__file__).resolve().parents[1] / "data" / "stsb-dev-400.jsonl"
FAST = RetryPolicy(max_retries=3, base_delay=0.01)
BASE, CAND = "gpt-base", "gpt-cand"
QA = [("What is the capital of France?", "Paris"), ("What is the capital of Italy?", "Rome"),
      ("What is the capital of Spain?", "Madrid"), ("What is the capital of Norway?", "Oslo")]


# --- helpers -----------------------------------------------------------------------------------


def model(server: OpenAIServer, name: str, **options: Any) -> dict[str, Any]:
    return suite_model(server, name, KEY_ENV, **options)


def write_suite(path: Path, baseline: dict, candidate: dict, tasks: list[dict], name: str = "faults") -> Path:
    return openai_server.write_suite(path, baseline, candidate, tasks, name)


def run(suite: Path, policy: RetryPolicy = FAST) -> dict:
    return run_suite(load_suite(suite), seed=0, policy=policy).results


def invoke(*args: Any):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def sent_to(server: OpenAIServer, model_id: str) -> list[dict]:
    return [r for r in server.requests if isinstance(r["body"], dict) and r["body"].get("model") == model_id]


@pytest.fixture
def server(monkeypatch) -> Iterator[OpenAIServer]:
    monkeypatch.setenv(KEY_ENV, "test-key")
    with OpenAIServer() as srv:
        srv.answer("Paris", match="France")
        srv.answer("Rome", match="Italy")
        srv.answer("Madrid", match="Spain", model=CAND)
        srv.answer("Bergen", match="Norway")
        yield srv
    assert srv.errors == []


def qa_task(tmp_path: Path, name: str = "qa", **fields: Any) -> dict:
    write_jsonl(tmp_path / f"{name}.jsonl", [{"id": f"q{i}", "prompt": q, "expected": a}
                                             for i, (q, a) in enumerate(QA)])
    return {"name": name, "type": "generation", "cases": f"{name}.jsonl", "scorers": ["exact_match"], **fields}


# --- transient faults are survived, and counted once -------------------------------------------

TRANSIENT = [("429", 0.05), ("500", None), ("503", None), ("timeout", 2.0), ("truncated", None),
             ("malformed", None)]


@pytest.mark.parametrize("kind, retry_after", TRANSIENT, ids=[k for k, _ in TRANSIENT])
def test_transient_fault_is_retried_and_nothing_is_double_counted(server, tmp_path, kind, retry_after):
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE, timeout=0.5), model(server, CAND, timeout=0.5),
                        [qa_task(tmp_path)])
    clean = run_suite(load_suite(suite), seed=0, policy=FAST)
    server.reset()
    server.fault(kind, times=2, match="Italy", model=CAND, retry_after=retry_after)
    faulty = run_suite(load_suite(suite), seed=0, policy=FAST)
    results = faulty.results

    assert server.count(outcome=kind) == 2
    assert server.count(CHAT) == 4 + 4 + 2
    assert results["verdict"] == "pass" and results["errors"] == []
    for metric in ("exact_match", "pass_rate", "prompt_tokens", "completion_tokens"):
        assert results["metrics"][f"qa/{metric}"] == clean.results["metrics"][f"qa/{metric}"], metric
    assert results["metrics"]["qa/exact_match"]["candidate"] == 0.75
    usage = results["tasks"]["qa"]["usage"]
    assert usage["candidate"]["retries"] == 2
    assert usage["candidate"]["attempts"] == usage["candidate"]["requests"] + 2 == 6
    assert usage["candidate"]["failures"] == 0
    assert usage["baseline"]["retries"] == 0 and usage["baseline"]["attempts"] == 4
    clean_usage = clean.results["tasks"]["qa"]["usage"]
    for role in ("baseline", "candidate"):
        for key in ("prompt_tokens", "completion_tokens", "requests"):
            assert usage[role][key] == clean_usage[role][key], (role, key)
    if kind == "timeout":  # the faulted case's latency is its successful attempt alone, not 2 x 0.5 s more
        italy = next(e for e in faulty.examples if e["id"] == "q1")
        assert italy["candidate"]["latency_ms"] < 500


def test_a_storm_of_random_faults_changes_nothing_but_the_retry_count(server, tmp_path):
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, CAND),
                        [qa_task(tmp_path, repeats=3, concurrency=6)])
    clean = run(suite)
    server.reset()
    server.fault_rate("429", 0.3)  # retry-after 0
    server.fault_rate("500", 0.15)
    results = run(suite, RetryPolicy(max_retries=12, base_delay=0.001))
    assert results["verdict"] == "pass" and results["errors"] == []
    for metric in ("exact_match", "pass_rate", "prompt_tokens", "completion_tokens"):
        assert results["metrics"][f"qa/{metric}"] == clean["metrics"][f"qa/{metric}"], metric
    faults = 0
    for role, model_id in (("baseline", BASE), ("candidate", CAND)):
        usage = results["tasks"]["qa"]["usage"][role]
        outcomes = [r["outcome"] for r in sent_to(server, model_id)]
        assert usage["attempts"] == len(outcomes)
        assert usage["requests"] == outcomes.count("ok") == 12
        assert usage["retries"] == len(outcomes) - 12
        assert usage["prompt_tokens"] == clean["tasks"]["qa"]["usage"][role]["prompt_tokens"]
        faults += usage["retries"]
    assert faults > 0


def test_a_failed_run_resumes_from_the_response_cache(server, tmp_path):
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, CAND, max_retries=1),
                        [qa_task(tmp_path)])
    server.fault("503", times=100, match="Italy", model=CAND)
    store = ResponseCache(tmp_path / "cache")
    try:
        failed = run_suite(load_suite(suite), seed=0, policy=FAST, responses=store).results
        assert failed["verdict"] == "error" and "1 of 4 requests" in failed["errors"][0]
        server.reset()
        resumed = run_suite(load_suite(suite), seed=0, policy=FAST, responses=store).results
    finally:
        store.close()
    assert resumed["verdict"] == "pass"
    assert [(r["body"]["model"], r["body"]["messages"][-1]["content"]) for r in server.requests] == [(CAND, QA[1][0])]
    assert resumed["metrics"]["qa/exact_match"]["candidate"] == 0.75
    assert resumed["tasks"]["qa"]["usage"]["candidate"]["cache_hits"] == 3


def _embedding_suite(server: OpenAIServer, tmp_path: Path, **candidate: Any) -> Path:
    rows = [json.loads(line) for line in STSB.read_text(encoding="utf-8").splitlines()[:12]]
    write_jsonl(tmp_path / "stsb.jsonl", rows)
    emb = {"baseline": model(server, "emb-a", batch_size=8),
           "candidate": model(server, "emb-b", **{"batch_size": 8, **candidate})}
    return write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, CAND),
                       [{"name": "stsb", "type": "sts", "data": "stsb.jsonl", "models": emb}])


def test_embedding_requests_survive_transient_faults(server, tmp_path):
    suite = _embedding_suite(server, tmp_path)
    clean = run(suite)
    batches = server.count(EMBED) // 2
    server.reset()
    server.fault("429", path=EMBED, model="emb-b", retry_after=0.01)
    server.fault("truncated", path=EMBED, model="emb-b")
    results = run(suite)
    assert results["verdict"] == "pass" and results["errors"] == []
    assert results["metrics"]["stsb/spearman"] == clean["metrics"]["stsb/spearman"]
    assert len(sent_to(server, "emb-b")) == batches + 2 and len(sent_to(server, "emb-a")) == batches


def test_embeddings_without_quota_are_an_error(server, tmp_path):
    suite = _embedding_suite(server, tmp_path, batch_size=2, concurrency=2)  # 12 batches, 2 at a time
    server.fault("insufficient_quota", times=100, path=EMBED, model="emb-b")
    results = run(suite)
    assert results["verdict"] == "error"
    assert "quota" in results["errors"][0] and "emb-b" in results["errors"][0]
    assert results["metrics"]["stsb/spearman"]["baseline"] is not None
    assert results["metrics"]["stsb/spearman"]["candidate"] is None
    assert 1 <= len(sent_to(server, "emb-b")) <= 2  # what was in flight; nothing retried


def test_retry_after_is_honoured(server, tmp_path):
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, CAND), [qa_task(tmp_path)])
    start = time.perf_counter()
    run(suite)
    clean = time.perf_counter() - start
    server.fault("429", match="Spain", model=CAND, retry_after=0.5)
    start = time.perf_counter()
    results = run(suite)  # FAST's own back-off is 0.01 s: only the server's Retry-After makes it wait
    faulty = time.perf_counter() - start
    assert results["verdict"] == "pass"
    assert results["tasks"]["qa"]["usage"]["candidate"]["retries"] == 1
    assert faulty >= 0.5
    assert faulty - clean >= 0.3


def test_a_retry_after_beyond_the_limit_fails_at_once(server, tmp_path):
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, CAND), [qa_task(tmp_path)])
    server.fault("429", match="Spain", model=CAND, retry_after=600)
    results = run(suite, RetryPolicy(max_retries=3, base_delay=0.01, max_retry_after=5.0))
    assert results["verdict"] == "error"
    assert server.count(outcome="429") == 1  # not retried
    assert "600 s" in results["errors"][0] and CAND in results["errors"][0]


# --- persistent and fatal faults end in error ---------------------------------------------------


def test_persistent_503_for_the_candidate_is_an_error_with_the_baseline_kept(server, tmp_path):
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE, max_retries=1),
                        model(server, CAND, max_retries=1), [qa_task(tmp_path)])
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"version": 1, "rules": [{"metric": "qa/exact_match", "min": 0.0,
                                                          "optional": True}]}))
    server.fault("503", times=100, model=CAND)
    result = invoke("run", suite, "--thresholds", rules, "--out", tmp_path / "out", "-q")
    assert result.exit_code == 3, result.output
    assert "ERROR" in result.output and "Traceback" not in result.output
    # the first attempt and max_retries 1 per case, until 3 requests have failed with none succeeded (the cold
    # breaker): the fourth case, in flight with them, may or may not have sent its retry by then
    assert 3 * 2 + 1 <= len(sent_to(server, CAND)) <= 4 * 2
    assert {r["outcome"] for r in sent_to(server, CAND)} == {"503"}
    results = valid_results(tmp_path / "out")
    assert results["verdict"] == "error"
    assert len(results["errors"]) == 1
    message = results["errors"][0]
    assert f"openai:{CAND}" in message and "failed" in message and "503" in message
    assert results["metrics"]["qa/exact_match"]["baseline"] == 0.5
    assert results["metrics"]["qa/exact_match"]["candidate"] is None
    assert results["tasks"]["qa"]["usage"]["baseline"]["requests"] == 4


def _many_cases(tmp_path: Path, n: int) -> dict:
    rows = [json.loads(line) for line in STSB.read_text(encoding="utf-8").splitlines()[:n]]
    write_jsonl(tmp_path / "many.jsonl", [{"id": i, "prompt": r["sentence1"], "expected": "yes"}
                                          for i, r in enumerate(rows)])
    return {"name": "many", "type": "generation", "cases": "many.jsonl", "scorers": ["contains"], "concurrency": 1}


def test_a_dead_endpoint_stops_being_asked_after_a_run_of_failures(server, tmp_path):
    """Before any request of a model has succeeded, the breaker trips after cold_breaker failed requests."""
    from gate.dispatch import Dispatcher

    breaker = Dispatcher().cold_breaker
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, CAND, max_retries=0),
                        [_many_cases(tmp_path, breaker + 4)])
    server.fault("503", times=1000, model=CAND)
    results = run(suite)
    assert results["verdict"] == "error"
    assert len(sent_to(server, CAND)) == breaker  # not all breaker + 4 cases
    assert len(sent_to(server, BASE)) == breaker + 4
    assert f"openai:{CAND}" in results["errors"][0] and "in a row" in results["errors"][0]
    assert "none has succeeded" in results["errors"][0]


def test_an_endpoint_that_dies_after_answering_gets_the_longer_breaker(server, tmp_path):
    """Once a request of the model has succeeded, a run of failures must reach the breaker's full length."""
    from gate.dispatch import Dispatcher

    breaker = Dispatcher().breaker
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, CAND, max_retries=0),
                        [_many_cases(tmp_path, breaker + 5)])
    first = json.loads(STSB.read_text(encoding="utf-8").splitlines()[0])["sentence1"]
    server.answer("yes", match=first)
    for line in STSB.read_text(encoding="utf-8").splitlines()[1:breaker + 5]:
        server.fault("503", times=1, model=CAND, match=json.loads(line)["sentence1"])
    results = run(suite)
    assert results["verdict"] == "error"
    assert len(sent_to(server, CAND)) == 1 + breaker  # the case that succeeded, then a full breaker's run
    assert "none has succeeded" not in results["errors"][0] and "in a row" in results["errors"][0]


def test_the_usage_of_a_role_that_failed_is_recorded(server, tmp_path):
    """The attempts, retries and failures spent on a model that could not answer are what a reader of
    results.json needs most; they are recorded like any other usage."""
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, CAND, max_retries=1),
                        [qa_task(tmp_path)])
    server.fault("503", times=100, match="Italy", model=CAND)
    results = run(suite)
    assert results["verdict"] == "error"
    usage = results["tasks"]["qa"]["usage"]
    assert usage["baseline"]["requests"] == 4
    assert "candidate" in usage, "the failed candidate's usage is missing from results.json"
    assert {k: usage["candidate"][k] for k in ("requests", "attempts", "retries", "failures")} == {
        "requests": 3, "attempts": 3 + 2, "retries": 1, "failures": 1}


def test_insufficient_quota_fails_fast_across_tasks(server, tmp_path):
    tasks = [qa_task(tmp_path, "qa", concurrency=2), qa_task(tmp_path, "qa2", concurrency=2)]
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, CAND), tasks)
    server.fault("insufficient_quota", times=100, model=CAND)
    results = run(suite)
    assert results["verdict"] == "error"
    assert 1 <= len(sent_to(server, CAND)) <= 2  # what was in flight; no retry, nothing for the second task
    assert len(results["errors"]) == 2
    assert all("quota" in e and f"openai:{CAND}" in e for e in results["errors"])
    for task in ("qa", "qa2"):
        assert results["metrics"][f"{task}/exact_match"]["baseline"] == 0.5
        assert results["metrics"][f"{task}/exact_match"]["candidate"] is None


def test_wrong_api_key_is_an_error_that_says_to_check_the_key(server, tmp_path, monkeypatch):
    secret = "sk-wrong-secret-0123456789"
    monkeypatch.setenv("GATE_CAND_API_KEY", secret)
    candidate = {**model(server, CAND), "api_key_env": "GATE_CAND_API_KEY"}
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE), candidate,
                        [qa_task(tmp_path, concurrency=2)])
    result = invoke("run", suite, "--out", tmp_path / "out", "-q")
    assert result.exit_code == 3, result.output
    results = valid_results(tmp_path / "out")
    assert results["verdict"] == "error"
    assert "check the API key" in results["errors"][0] and "401" in results["errors"][0]
    assert 1 <= len(sent_to(server, CAND)) <= 2  # what was in flight; no retry, no more cases
    written = "".join(p.read_text(encoding="utf-8") for p in (tmp_path / "out").iterdir())
    assert secret not in written and secret not in result.output


def test_unknown_model_is_an_error_naming_it(server, tmp_path):
    server.known_models = {BASE}
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, "gpt-nope"),
                        [qa_task(tmp_path, concurrency=1)])
    results = run(suite)
    assert results["verdict"] == "error"
    assert "gpt-nope" in results["errors"][0] and "404" in results["errors"][0]
    assert len(sent_to(server, "gpt-nope")) == 1
    assert results["metrics"]["qa/exact_match"]["baseline"] == 0.5


def test_a_fatal_fault_on_one_endpoint_does_not_stop_the_same_model_id_on_another(monkeypatch, tmp_path):
    """Two servers both serving a model called 'llama' (e.g. two vLLM deployments): the candidate's has
    no quota left. Only the candidate is unusable; the baseline, another endpoint, answers every task."""
    monkeypatch.setenv(KEY_ENV, "test-key")
    with OpenAIServer() as base_server, OpenAIServer() as cand_server:
        cand_server.fault("insufficient_quota", times=100)
        tasks = [qa_task(tmp_path, "qa"), qa_task(tmp_path, "qa2")]
        suite = write_suite(tmp_path / "suite.yaml", model(base_server, "llama"), model(cand_server, "llama"), tasks)
        results = run(suite)
    assert results["verdict"] == "error"
    assert base_server.count(CHAT, outcome="ok") == 8
    for task in ("qa", "qa2"):
        assert results["metrics"][f"{task}/exact_match"]["baseline"] == 0.0, results["errors"]
        assert results["metrics"][f"{task}/exact_match"]["candidate"] is None
    assert len(results["errors"]) == 2 and all("quota" in e for e in results["errors"])


# --- degenerate answers are scored, not crashes --------------------------------------------------


def test_empty_null_and_cut_answers_are_scored_failures(server, tmp_path):
    server.clear_answers()
    server.answer("", match="France", model=CAND)
    server.answer(None, match="Italy", model=CAND)  # content: null, no tool call
    server.answer("The capital is Madrid", match="Spain", model=CAND)  # cut to "The" by max_tokens 1
    server.answer("Oslo", match="Norway", model=CAND)
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, CAND),
                        [qa_task(tmp_path, max_tokens=1)])
    out = run_suite(load_suite(suite), seed=0, policy=FAST)
    results = out.results
    assert results["verdict"] == "pass" and results["errors"] == []
    assert results["metrics"]["qa/exact_match"]["candidate"] == 0.25
    answers = {e["id"]: e["candidate"]["answer"] for e in out.examples}
    assert answers == {"q0": "", "q1": "", "q2": "The", "q3": "Oslo"}
    assert {e["id"]: e["candidate"]["exact_match"] for e in out.examples} == {"q0": 0.0, "q1": 0.0, "q2": 0.0,
                                                                             "q3": 1.0}
    assert [e["candidate"]["passed"] for e in out.examples] == [False, False, False, True]


def test_tool_arguments_that_are_not_json_are_a_scored_failure(server, tmp_path):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    write_jsonl(tmp_path / "tools.jsonl", [
        {"id": "w", "prompt": "What is the weather in Paris?", "expected_tool_call": {
            "name": "get_weather", "arguments": {"city": "Paris"}}}])
    server.answer(None, match="weather", model=CAND, tool_calls=[{"name": "get_weather", "arguments": "{city: Paris"}])
    task = {"name": "tools", "type": "generation", "cases": "tools.jsonl", "scorers": ["tool_call"], "tools": tools}
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, CAND), [task])
    results = run(suite)
    assert results["errors"] == []
    assert results["metrics"]["tools/tool_call"]["candidate"] == 0.0
    assert results["metrics"]["tools/tool_name_accuracy"]["candidate"] == 1.0
    assert results["metrics"]["tools/args_accuracy"]["candidate"] == 0.0


# --- bad input: exit 2, located, before anything is sent ----------------------------------------


def _bad(tmp_path: Path, server: OpenAIServer, monkeypatch, case: str) -> tuple[Path, list[str]]:
    """Write the bad suite for ``case``; return the suite and what the message must contain."""
    suite = tmp_path / "suite.yaml"
    pair = (model(server, BASE), model(server, CAND))
    if case == "missing-key":
        monkeypatch.delenv(KEY_ENV)
        write_suite(suite, *pair, [qa_task(tmp_path)])
        return suite, [KEY_ENV, f"{suite}:4", "not set"]
    if case == "unknown-scorer":
        write_suite(suite, *pair, [qa_task(tmp_path, scorers=["exact_match", "exactmatch"])])
        return suite, [f"{suite}:7", "scorers", "exactmatch"]
    if case == "missing-expected":
        cases = write_jsonl(tmp_path / "c.jsonl", [{"id": 1, "prompt": "What is the capital of France?",
                                                    "expected": "Paris"},
                                                   {"id": 2, "prompt": "What is the capital of Italy?"}])
        write_suite(suite, *pair, [{"name": "qa", "type": "generation", "cases": cases.name,
                                    "scorers": ["exact_match"]}])
        return suite, [f"{cases}:2", "'expected'", "exact_match"]
    if case == "invalid-case-schema":
        cases = write_jsonl(tmp_path / "c.jsonl", [
            {"id": 1, "prompt": "Give me JSON.", "schema": {"type": "object"}},
            {"id": 2, "prompt": "Give me more JSON.", "schema": {"type": "objekt"}}])
        write_suite(suite, *pair, [{"name": "js", "type": "generation", "cases": cases.name,
                                    "scorers": ["json_schema"]}])
        return suite, [f"{cases}:2", "'schema'", "invalid JSON Schema"]
    if case == "invalid-task-tools":
        cases = write_jsonl(tmp_path / "c.jsonl", [{"id": 1, "prompt": "Weather in Paris?",
                                                    "expected_tool_call": None}])
        write_suite(suite, *pair, [{"name": "tc", "type": "generation", "cases": cases.name,
                                    "scorers": ["tool_call"],
                                    "tools": [{"type": "function", "function": {"name": "get weather"}}]}])
        return suite, [f"{suite}:7", "tools[0].function.name", "get weather"]
    if case == "invalid-case-tools":
        cases = write_jsonl(tmp_path / "c.jsonl", [{"id": 1, "prompt": "Weather in Paris?",
                                                    "tools": [{"name": "get_weather"}],
                                                    "expected_tool_call": None}])
        write_suite(suite, *pair, [{"name": "tc", "type": "generation", "cases": cases.name,
                                    "scorers": ["tool_call"]}])
        return suite, [f"{cases}:1", "tools[0]", "function"]
    if case == "embedding-model-generates":
        local = {"provider": "sentence-transformers", "model": "default"}
        write_suite(suite, *pair, [qa_task(tmp_path, models={"baseline": local, "candidate": local})])
        return suite, [f"{suite}:7", "sentence-transformers:default", "cannot", "generate"]
    if case == "min-pass-above-repeats":
        write_suite(suite, *pair, [qa_task(tmp_path, repeats=2, min_pass=3)])
        return suite, [f"{suite}:7", "min_pass", "repeats"]
    raise AssertionError(case)


BAD = ["missing-key", "unknown-scorer", "missing-expected", "invalid-case-schema", "invalid-task-tools",
       "invalid-case-tools", "embedding-model-generates", "min-pass-above-repeats"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_exit_2_with_file_line_and_field(server, tmp_path, monkeypatch, case):
    suite, wanted = _bad(tmp_path, server, monkeypatch, case)
    for args in (("run", suite, "--out", tmp_path / "out", "-q"), ("run", suite, "--dry-run")):
        result = invoke(*args)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and "internal error" not in result.output
        for text in wanted:
            assert text in result.output, (text, result.output)
    assert server.count() == 0
    assert not (tmp_path / "out").exists()
