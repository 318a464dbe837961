"""Fair, bounded generative runs against the local OpenAI-compatible server (the real ``openai`` SDK).

- the schedule: each case's two requests go out together, in a seeded order, recorded in results.json; the
  scores of a seed never depend on it;
- endpoints that cannot answer: a closed port and a read timeout end in ``error`` after a few attempts, the
  run's time limit (``max_duration_s``) abandons what is in flight;
- the run budget: an estimate above ``--max-cost`` (or ``max_cost_usd``) is exit 2 with nothing sent, a run
  that would pass it stops sending and records what it spent;
- the pairwise judge in results.json and the report, an unpinned alias warned about.

No timing assertions (benchmarks measure time: bench/bench_fair_latency.py, bench/bench_endpoint_limits.py);
subprocess-free, each test bounded by the server's own short latencies.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

from gate.cli import cli
from gate.dispatch import RetryPolicy
from gate.report import render
from gate.runner import run_suite
from gate.suite import load_suite

from tests.conftest import valid_results, write_jsonl

try:
    from tests import openai_server
    from tests.openai_server import OpenAIServer, suite_model
except ModuleNotFoundError:  # run as `pytest`, not `python -m pytest`
    import openai_server  # type: ignore[no-redef]
    from openai_server import OpenAIServer, suite_model  # type: ignore[no-redef]

KEY_ENV = "GATE_LIMITS_TEST_API_KEY"
CHAT = "/v1/chat/completions"
FAST = RetryPolicy(max_retries=3, base_delay=0.01)
BASE, CAND, JUDGE = "gpt-base", "gpt-cand", "gpt-judge"
DOLLAR_A_TOKEN = {"input_per_mtok": 1_000_000, "output_per_mtok": 0}


def model(server: OpenAIServer, name: str, **options: Any) -> dict[str, Any]:
    return suite_model(server, name, KEY_ENV, **options)


def write_suite(path: Path, baseline: dict, candidate: dict, tasks: list[dict], *, extra: str = "") -> Path:
    openai_server.write_suite(path, baseline, candidate, tasks, "limits")
    if extra:
        path.write_text(path.read_text(encoding="utf-8") + extra, encoding="utf-8")
    return path


def invoke(*args: Any):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def sent_to(server: OpenAIServer, model_id: str) -> list[dict]:
    return [r for r in server.requests if isinstance(r["body"], dict) and r["body"].get("model") == model_id]


def prompt(i: int, dear: bool = False) -> str:
    """16 characters, so gate estimates 4 prompt tokens; the server counts a token a word: 4, or 8 when ``dear``."""
    return f"a a a a a a a {i:02d}" if dear else f"abc abc abc {i:04d}"


def cases_task(tmp_path: Path, n: int, *, dear: bool = False, **fields: Any) -> dict:
    rows = [{"id": f"c{i}", "prompt": prompt(i, dear), "expected": "x"} for i in range(n)]
    write_jsonl(tmp_path / "cases.jsonl", rows)
    return {"name": "qa", "type": "generation", "cases": "cases.jsonl", "scorers": ["contains"], **fields}


@pytest.fixture
def server(monkeypatch) -> Iterator[OpenAIServer]:
    monkeypatch.setenv(KEY_ENV, "test-key")
    with OpenAIServer() as srv:
        yield srv
    assert srv.errors == []


# --- the schedule -------------------------------------------------------------------------------------------


def test_each_case_goes_to_both_models_together_and_the_schedule_is_recorded(server, tmp_path):
    server.latency = 0.02
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, CAND),
                        [cases_task(tmp_path, 12, concurrency=1)])
    results = run_suite(load_suite(suite), seed=4, policy=FAST).results
    assert results["verdict"] == "pass"
    prompts = [r["body"]["messages"][-1]["content"] for r in server.requests]
    models = [r["body"]["model"] for r in server.requests]
    for i in range(12):  # requests arrive case by case, one to each model: never one model running ahead
        assert prompts[2 * i] == prompts[2 * i + 1] == prompt(i)
        assert {models[2 * i], models[2 * i + 1]} == {BASE, CAND}
    schedule = results["tasks"]["qa"]["schedule"]
    assert schedule["mode"] == "interleaved" and isinstance(schedule["order_seed"], int)


def test_the_scores_of_a_seed_do_not_depend_on_the_schedule(server, tmp_path):
    server.answer("x marks it", match="1 ")
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, CAND),
                        [cases_task(tmp_path, 30, repeats=2, concurrency=3)])
    first = run_suite(load_suite(suite), seed=9, policy=FAST).results
    second = run_suite(load_suite(suite), seed=9, policy=FAST).results
    sequential = run_suite(load_suite(suite), seed=9, policy=FAST, interleave=False).results
    for other in (second, sequential):
        for mid, entry in first["metrics"].items():
            if "latency" not in mid:  # only latency may move between runs of one seed
                assert other["metrics"][mid] == entry, mid
    assert sequential["tasks"]["qa"]["schedule"]["mode"] == "sequential"


# --- endpoints that cannot answer ---------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_endpoint_nobody_listens_on_is_an_error_after_a_few_attempts(server, tmp_path):
    dead = {**model(server, CAND), "base_url": f"http://127.0.0.1:{_closed_port()}/v1"}
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE), dead, [cases_task(tmp_path, 20, concurrency=1)])
    results = run_suite(load_suite(suite), seed=0, policy=FAST).results
    assert results["verdict"] == "error"
    assert "connection failed" in results["errors"][0] and f"openai:{CAND}" in results["errors"][0]
    assert "none has succeeded; stopped sending" in results["errors"][0]
    # the cold breaker: 3 requests that could not connect through their retries, not 20 requests x 4 retries
    assert results["tasks"]["qa"]["usage"]["candidate"]["attempts"] <= 3 * 4
    assert len(sent_to(server, BASE)) == 20  # the baseline is still answered


def test_an_endpoint_that_does_not_answer_in_time_is_an_error_after_a_few_requests(server, tmp_path):
    server.latency = 2.0
    slow = model(server, CAND, timeout=0.3, connect_timeout=0.2, max_retries=1)
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE, timeout=5), slow,
                        [cases_task(tmp_path, 9, concurrency=3)])
    results = run_suite(load_suite(suite), seed=0, policy=FAST).results
    assert results["verdict"] == "error"
    message = results["errors"][0]
    assert "timed out" in message and "none has succeeded" in message
    assert len(sent_to(server, CAND)) == 3 * 2  # three requests in flight, each retried once, then stopped


def test_the_run_time_limit_abandons_requests_in_flight(server, tmp_path):
    server.latency = 20.0
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, CAND),
                        [cases_task(tmp_path, 8, concurrency=2)], extra="max_duration_s: 4\n")
    results = run_suite(load_suite(suite), seed=0, policy=FAST).results
    assert results["verdict"] == "error"
    assert all("max_duration_s: 4 s" in e for e in results["errors"]) and len(results["errors"]) == 2
    assert server.count(CHAT) == 4  # two per model in flight when the limit passed; nothing after


def test_connect_timeout_is_a_valid_option_and_a_bad_limit_is_bad_input(server, tmp_path):
    good = write_suite(tmp_path / "good.yaml", model(server, BASE, connect_timeout=2.5), model(server, CAND),
                       [cases_task(tmp_path, 2)], extra="max_cost_usd: 1.5\nmax_duration_s: 600\n")
    assert invoke("validate", good).exit_code == 0
    bad = write_suite(tmp_path / "bad.yaml", model(server, BASE, connect_timeout=0), model(server, CAND),
                      [cases_task(tmp_path, 2)], extra="max_cost_usd: -1\n")
    result = invoke("validate", bad)
    assert result.exit_code == 2
    assert "connect_timeout" in result.output and "max_cost_usd" in result.output


# --- the run budget -----------------------------------------------------------------------------------------


def test_an_estimate_above_max_cost_is_exit_2_before_any_request(server, tmp_path):
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE, pricing=DOLLAR_A_TOKEN),
                        model(server, CAND, pricing=DOLLAR_A_TOKEN), [cases_task(tmp_path, 10, max_tokens=1)])
    result = invoke("run", suite, "--max-cost", "5", "--out", tmp_path / "out", "-q")
    assert result.exit_code == 2, result.output
    assert server.count() == 0
    assert "estimated cost $80.0000 exceeds the run budget $5.0000 (--max-cost)" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out" / "results.json").exists()


def test_the_suites_budget_counts_too_and_the_smaller_one_wins(server, tmp_path):
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE, pricing=DOLLAR_A_TOKEN),
                        model(server, CAND, pricing=DOLLAR_A_TOKEN), [cases_task(tmp_path, 10, max_tokens=1)],
                        extra="max_cost_usd: 50\n")
    result = invoke("run", suite, "--max-cost", "1000", "--out", tmp_path / "out", "-q")
    assert result.exit_code == 2 and server.count() == 0
    assert "exceeds the run budget $50.0000 (max_cost_usd)" in result.output


def test_a_dry_run_with_a_budget_says_whether_it_fits(server, tmp_path):
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE, pricing=DOLLAR_A_TOKEN),
                        model(server, CAND, pricing=DOLLAR_A_TOKEN), [cases_task(tmp_path, 10, max_tokens=1)])
    fits = invoke("run", suite, "--dry-run", "--max-cost", "100")
    assert fits.exit_code == 0 and "run budget: $100.0000 (--max-cost): the estimate fits" in fits.output
    over = invoke("run", suite, "--dry-run", "--max-cost", "10")
    assert over.exit_code == 2 and "would stop with exit 2" in over.output
    assert server.count() == 0


def test_a_budget_needs_a_price_for_every_model_that_is_sent_requests(server, tmp_path):
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE, pricing=DOLLAR_A_TOKEN), model(server, CAND),
                        [cases_task(tmp_path, 3)])
    result = invoke("run", suite, "--max-cost", "1000", "--out", tmp_path / "out", "-q")
    assert result.exit_code == 2 and server.count() == 0
    assert f"openai:{CAND}" in result.output and "pricing" in result.output


def test_a_run_that_would_pass_its_budget_stops_sending_and_records_what_it_spent(server, tmp_path):
    # each prompt is estimated at 4 tokens ($4) but the server counts 8: answers cost twice their estimate
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE, pricing=DOLLAR_A_TOKEN),
                        model(server, CAND, pricing=DOLLAR_A_TOKEN),
                        [cases_task(tmp_path, 10, dear=True, max_tokens=1, concurrency=1)])
    result = invoke("run", suite, "--max-cost", "100", "--out", tmp_path / "out", "-q")  # estimate: $80
    assert result.exit_code == 3, result.output
    results = valid_results(tmp_path / "out")
    budget = results["budget"]
    assert results["verdict"] == "error" and budget["stopped"] is True
    assert budget["estimated_usd"] == 80.0 and budget["max_cost_usd"] == 100.0
    assert 0 < budget["spent_usd"] <= 100.0
    assert server.count(CHAT) < 20 and budget["spent_usd"] == 8.0 * server.count(CHAT)
    usage = results["tasks"]["qa"]["usage"]
    assert usage["baseline"]["spent_usd"] + usage["candidate"]["spent_usd"] == budget["spent_usd"]
    assert any("run budget of $100.0000" in e for e in results["errors"])


def test_answers_that_cost_more_than_reserved_and_pass_the_budget_are_an_error(server, tmp_path):
    """Every request is reserved at once (concurrency 10) at its estimate ($4 each, $80 in all, under the
    $90 budget); the server counts twice the tokens, so the run spends $160: never a pass."""
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE, pricing=DOLLAR_A_TOKEN),
                        model(server, CAND, pricing=DOLLAR_A_TOKEN),
                        [cases_task(tmp_path, 10, dear=True, max_tokens=1, concurrency=10)])
    server.latency = 0.2  # every reservation is made before the first answer settles
    result = invoke("run", suite, "--max-cost", "90", "--out", tmp_path / "out", "-q")
    assert result.exit_code == 3, result.output
    results = valid_results(tmp_path / "out")
    assert results["budget"]["spent_usd"] > 90.0 and results["verdict"] == "error"
    assert any("over its budget of $90.0000 (--max-cost): the answers cost more than estimated" in e
               for e in results["errors"])


def test_a_shard_that_spends_over_its_budget_merges_as_an_error(server, tmp_path):
    """The same overspend as above, in a shard: the shard records it and ``gate merge`` never passes it."""
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE, pricing=DOLLAR_A_TOKEN),
                        model(server, CAND, pricing=DOLLAR_A_TOKEN),
                        [cases_task(tmp_path, 10, dear=True, max_tokens=1, concurrency=10)])
    server.latency = 0.2
    invoke("run", suite, "--max-cost", "90", "--shard", "1/1", "--out", tmp_path / "s1", "-q")
    shard = json.loads((tmp_path / "s1" / "shard.json").read_text())
    assert any("over its budget of $90.0000" in e for e in shard["errors"])
    merged = invoke("merge", tmp_path / "s1", "--suite", suite, "--out", tmp_path / "merged", "-q")
    assert merged.exit_code == 3, merged.output
    results = valid_results(tmp_path / "merged")
    assert results["verdict"] == "error" and any("over its budget of $90.0000" in e for e in results["errors"])


def test_one_model_in_both_roles_is_asked_each_request_once(server, tmp_path):
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, BASE),
                        [cases_task(tmp_path, 6, temperature=0.7)])
    results = run_suite(load_suite(suite), seed=1, policy=FAST).results
    assert server.count(CHAT) == 6  # not 12: the same requests to the same model are the same answers
    usage = results["tasks"]["qa"]["usage"]
    assert usage["baseline"]["requests"] == 6 and usage["candidate"]["cache_hits"] == 6
    assert all(m["delta"] in (0.0, None) for mid, m in results["metrics"].items() if "latency" not in mid)


def test_a_run_within_its_budget_records_it(server, tmp_path):
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE, pricing=DOLLAR_A_TOKEN),
                        model(server, CAND, pricing=DOLLAR_A_TOKEN), [cases_task(tmp_path, 4, max_tokens=1)])
    result = invoke("run", suite, "--max-cost", "100", "--out", tmp_path / "out", "-q")
    assert result.exit_code == 0, result.output
    budget = valid_results(tmp_path / "out")["budget"]
    assert budget == {"max_cost_usd": 100.0, "source": "--max-cost", "estimated_usd": 32.0, "spent_usd": 32.0,
                      "stopped": False}


# --- the pairwise judge -------------------------------------------------------------------------------------


@pytest.mark.parametrize("judge_id, pinned", [(JUDGE, False), ("gpt-4o-2024-08-06", True)])
def test_the_judge_is_in_the_report_and_an_unpinned_alias_is_a_warning(server, tmp_path, judge_id, pinned):
    server.answer("A", model=judge_id)
    task = {**cases_task(tmp_path, 3), "type": "pairwise", "judge": model(server, judge_id)}
    del task["scorers"]
    suite = write_suite(tmp_path / "suite.yaml", model(server, BASE), model(server, CAND), [task])
    results = run_suite(load_suite(suite), seed=0, policy=FAST).results
    judge = results["tasks"]["qa"]["judge"]
    assert judge["pinned"] is pinned and judge["prompt_version"] == "gate-pairwise-v1"
    report = render(results)
    assert f"`openai:{judge_id}`" in report and "`gate-pairwise-v1`" in report
    assert ("Unpinned judge" in report) is not pinned
    if not pinned:
        assert "dated snapshot" in judge["warning"]


def test_a_forged_judge_entry_does_not_break_the_report(server, tmp_path):
    results = json.loads(json.dumps({
        "schema_version": 1, "suite": "s", "verdict": "pass", "models": {
            "baseline": {"spec": "a", "fingerprint": None}, "candidate": {"spec": "b", "fingerprint": None}},
        "tasks": {"t": {"type": "pairwise", "group": "g", "n": 1, "judge": {"spec": "<b>@x</b>", "warning": 7}},
                  "u": {"type": "pairwise", "group": "g", "n": 1, "judge": "not a mapping"}},
        "metrics": {}, "rules": [], "errors": []}))
    report = render(results)
    assert "Pairwise judge" in report and "`not a mapping`" not in report
    assert report.count("<b>") == report.count("`<b>@x</b>`") == 1  # inert: inside a code span
