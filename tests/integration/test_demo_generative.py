"""The generative example (examples/tool-calling) and `gate demo --generative`.

- The example suites are valid, their data reproduces byte for byte from build_data.py.
- The suite runs end to end against the local OpenAI-compatible server with scripted answers
  (a tuned model that calls the right tools, a baseline that calls none, a greedy one that always
  calls block_card), with the repository's go/no-go checklist: verdicts and metrics as scripted,
  and a second run is served from the response cache.
- `model`: the demo command itself on real SmolLM2-135M-Instruct, on a reduced copy of the suite
  (the full demo takes about 150 s cold on 2 CPU cores, far more on a busy machine).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import gate.demo
from gate.cli import cli
from gate.thresholds import rules_from_data
from tests.conftest import ROOT, read_jsonl, write_jsonl

try:
    from tests.openai_server import OpenAIServer
except ImportError:  # run as `pytest`, not `python -m pytest`
    from openai_server import OpenAIServer

EXAMPLE = ROOT / "examples" / "tool-calling"
SUITE = EXAMPLE / "suite.yaml"
OPENAI_SUITE = EXAMPLE / "suite.openai.yaml"
THRESHOLDS = ROOT / "thresholds.example.json"
BANKING77 = ROOT / "examples" / "tool-calling" / "source" / "banking77"  # committed: nothing to skip
DATA_FILES = ("banking-tools.jsonl", "intent-json.jsonl", "general-intent.jsonl")
KEY = "test-key"


def load_build_data():
    import importlib.util

    spec = importlib.util.spec_from_file_location("tool_calling_build_data", EXAMPLE / "build_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cases(name: str) -> list[dict]:
    return read_jsonl(EXAMPLE / "data" / name)


def last_user(case: dict) -> str:
    return case["messages"][-1]["content"]


def results_of(out: Path) -> dict:
    return json.loads((out / "results.json").read_text(encoding="utf-8"))


def values(results: dict, metric: str) -> tuple:
    m = results["metrics"][metric]
    return m["baseline"], m["candidate"]


# --- the example's files ------------------------------------------------------------------------


def test_example_suites_validate():
    result = CliRunner().invoke(cli, ["validate", str(SUITE), str(OPENAI_SUITE), str(THRESHOLDS)])
    assert result.exit_code == 0, result.output
    assert "ok: " + str(SUITE) + " (suite, 3 tasks)" in result.output
    # the go/no-go checklist fits both suites: every rule but the optional human-preference one selects a metric
    assert (f"ok: {THRESHOLDS} (thresholds, 8 rules; every rule but 1 optional one selects a metric of each of the "
            "2 suites ('tool-calling'))") in result.output


def test_openai_suite_has_the_same_tasks_and_the_tools_of_build_data():
    local, remote = (yaml.safe_load(p.read_text(encoding="utf-8")) for p in (SUITE, OPENAI_SUITE))
    assert local["tasks"] == remote["tasks"]
    assert local["name"] == remote["name"]
    assert {m["provider"] for m in remote["models"].values()} == {"openai"}
    assert local["models"]["baseline"] == {"provider": "transformers", "model": "smollm2"}
    assert local["models"]["candidate"]["model"] == "smollm2" and local["models"]["candidate"]["system_prompt"]
    tools = next(t for t in local["tasks"] if t["name"] == "banking-tools")["tools"]
    assert tools == load_build_data().tool_definitions()


def test_cases_are_real_banking77_rows_except_the_adversarial_ones():
    tool_cases = cases("banking-tools.jsonl")
    by_category: dict[str, list[dict]] = {}
    for c in tool_cases:
        by_category.setdefault(c["category"], []).append(c)
    assert {k: len(v) for k, v in by_category.items()} == {"simple": 6, "edge_case": 6, "adversarial": 6}
    assert all(c["source"] == "hand-written for gate" and c["expected_tool_call"] is None
               for c in by_category["adversarial"])
    assert len(cases("intent-json.jsonl")) == len(cases("general-intent.jsonl")) == 8
    test_rows = read_jsonl(BANKING77 / "test.jsonl")
    for name in DATA_FILES:
        for c in cases(name):
            if c["source"].startswith("banking77/test.jsonl:"):
                row = test_rows[int(c["source"].rsplit(":", 1)[1]) - 1]
                assert row["label"] == c["label"]
                assert last_user(c) == row["text"] or last_user(c).endswith("Message: " + row["text"])


def test_data_reproduces_from_build_data(tmp_path):
    subprocess.run([sys.executable, str(EXAMPLE / "build_data.py"), "--source", str(BANKING77 / "test.jsonl"),
                    "--out", str(tmp_path)], check=True, capture_output=True)
    for name in DATA_FILES:
        assert (tmp_path / name).read_bytes() == (EXAMPLE / "data" / name).read_bytes(), name


# --- end to end against an OpenAI-compatible server ---------------------------------------------


@pytest.fixture(scope="module")
def server():
    """Scripted models: ``tuned`` answers everything right, ``base`` calls no tool (and gets half the JSON
    and 6 of 8 labels right), ``greedy`` answers like ``tuned`` but calls block_card for every request."""
    rules: list[tuple[str, str, dict]] = []
    for c in cases("banking-tools.jsonl"):
        call = c["expected_tool_call"]
        right = {"tool_calls": [call]} if call else {"text": "I cannot do that here."}
        rules += [(last_user(c), "tuned", right),
                  (last_user(c), "greedy", {"tool_calls": [{"name": "block_card", "arguments": {}}]}),
                  (last_user(c), "base", {"text": "Let me look into that for you."})]
    for i, c in enumerate(cases("intent-json.jsonl")):
        right = {"text": json.dumps({"intent": c["label"]})}
        rules += [(last_user(c), "tuned", right), (last_user(c), "greedy", right),
                  (last_user(c), "base", right if i % 2 == 0 else {"text": f"The intent is {c['label']}."})]
    for i, c in enumerate(cases("general-intent.jsonl")):
        right = {"text": c["expected"]}
        rules += [(last_user(c), "tuned", right), (last_user(c), "greedy", right),
                  (last_user(c), "base", right if i < 6 else {"text": "I am not sure."})]
    with OpenAIServer(latency=0.1, api_key=KEY) as srv:
        # the longest match first, so a query that is part of a longer one never takes its answer
        for match, model, answer in sorted(rules, key=lambda r: -len(r[0])):
            srv.answer(answer.get("text"), match=match, model=model, tool_calls=answer.get("tool_calls"))
        yield srv
    assert srv.errors == []


@pytest.fixture
def endpoint(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)  # suite.openai.yaml names no base_url
    server.reset()
    return server


def checklist_for_a_shared_machine(folder: Path) -> Path:
    """The repository's checklist with its latency rule as a warning.

    Both scripted models answer after the same server latency, but the latency gate measures also holds
    the client's own stalls: with 8 cases a p99 is the maximum, and one pause of the loaded test process
    (a garbage collection, another test's threads on these 2 cores) beyond the server latency doubles it.
    Two fresh-clone CI runs failed that way (p99 ratios 3.7 and 2.2). The rule's arithmetic is tested
    deterministically in tests/unit/test_thresholds.py; here it must be applied, not decide the verdict.
    """
    checklist = json.loads(THRESHOLDS.read_text(encoding="utf-8"))
    for rule in checklist["rules"]:
        if "latency" in rule["metric"]:
            rule["severity"] = "warn"
    path = folder / "checklist.json"
    path.write_text(json.dumps(checklist), encoding="utf-8")
    return path


def run_gate(out: Path, candidate: str, cache: Path | None = None, *extra: str):
    out.parent.mkdir(parents=True, exist_ok=True)
    args = ["run", str(OPENAI_SUITE), "--baseline", "openai:base", "--candidate", f"openai:{candidate}",
            "--thresholds", str(checklist_for_a_shared_machine(out.parent)), "--out", str(out), "-q", *extra]
    if cache is not None:
        args += ["--cache", str(cache)]
    return CliRunner().invoke(cli, args)


def rule_statuses(results: dict) -> dict[tuple[str, str | None], str]:
    return {(r["name"], r["metric"]): r["status"] for r in results["rules"]}


def test_openai_endpoint_run_passes_as_scripted_and_reruns_from_the_cache(endpoint, tmp_path):
    result = run_gate(tmp_path / "out", "tuned", tmp_path / "cache")
    assert result.exit_code == 0, result.output
    res = results_of(tmp_path / "out")
    assert res["verdict"] == "pass", res["reason"]
    assert res["models"]["candidate"]["spec"] == "openai:tuned"
    assert values(res, "banking-tools/pass_rate") == (0.5, 1.0)
    assert values(res, "banking-tools/tool_call[simple]") == (0.0, 1.0)
    assert values(res, "banking-tools/pass_rate[edge_case]") == (0.5, 1.0)
    assert values(res, "banking-tools/pass_rate[adversarial]") == (1.0, 1.0)
    assert values(res, "intent-json/schema_compliance") == (0.5, 1.0)
    assert values(res, "intent-json/json_valid") == (0.5, 1.0)
    assert values(res, "general-intent/exact_match") == (0.75, 1.0)
    statuses = rule_statuses(res)
    for metric in ("banking-tools/pass_rate", "intent-json/pass_rate"):
        assert statuses[("target improves by at least 5%", metric)] == "pass"
    assert statuses[("adversarial pass rate at least 90%", "banking-tools/pass_rate[adversarial]")] == "pass"
    assert statuses[("schema compliance 100%", "intent-json/schema_compliance")] == "pass"
    assert statuses[("exact match at least 85%", "general-intent/exact_match")] == "pass"
    assert statuses[("no general regression beyond 5%", "general-intent/pass_rate")] == "pass"
    # the fine-tune's declared price is twice the base model's: a warning, never a block
    assert statuses[("evaluation cost at most 1.5x baseline", "banking-tools/cost_usd")] == "warn"
    # latency is applied to every task (pass, or a warning when the shared machine stalled)
    latency = {m: st for (name, m), st in statuses.items() if name == "latency p99 at most 2x baseline"}
    assert set(latency) == {f"{t}/latency_p99_ms" for t in ("banking-tools", "intent-json", "general-intent")}
    assert set(latency.values()) <= {"pass", "warn"}
    for (name, _), status in statuses.items():
        assert (status == "skipped") == ("human" in name)  # only human preference is not produced yet

    # what went over the wire: the suite's tools, greedy decoding, the task's max_tokens, seed 0
    chats = [r["body"] for r in endpoint.requests if r["path"] == "/v1/chat/completions"]
    assert len(chats) == 2 * 34
    tool_requests = [b for b in chats if b.get("tools")]
    assert len(tool_requests) == 2 * 18
    assert {t["function"]["name"] for t in tool_requests[0]["tools"]} == {
        "track_card_delivery", "block_card", "get_exchange_rate", "cancel_transfer", "activate_card"}
    assert {(b["temperature"], b["seed"], b["max_tokens"]) for b in tool_requests} == {(0.0, 0, 32)}

    usage = {name: res["tasks"][name]["usage"] for name in ("banking-tools", "intent-json", "general-intent")}
    assert usage["banking-tools"]["candidate"]["requests"] == 18 and usage["intent-json"]["baseline"]["requests"] == 8
    for name, roles in usage.items():
        for role, u in roles.items():
            assert u["cache_hits"] == 0 and u["retries"] == 0 and u["failures"] == 0
            # nothing was cached, so the list-price cost is exactly what was spent
            assert u["spent_usd"] == pytest.approx(res["metrics"][f"{name}/cost_usd"][role], rel=1e-9)

    # the same run again: every answer from the response cache, nothing sent, the same figures
    endpoint.reset()
    again = run_gate(tmp_path / "again", "tuned", tmp_path / "cache")
    assert again.exit_code == 0, again.output
    assert endpoint.count("/v1/chat/completions") == 0
    res2 = results_of(tmp_path / "again")
    assert res2["metrics"] == res["metrics"]  # cached answers keep their latency and tokens
    for name, roles in ((n, res2["tasks"][n]["usage"]) for n in usage):
        for role, u in roles.items():
            assert u["requests"] == 0 and u["cache_hits"] == res["tasks"][name]["n"]
            assert u["spent_usd"] == 0.0


def test_openai_endpoint_run_fails_a_candidate_that_calls_tools_greedily(endpoint, tmp_path):
    result = run_gate(tmp_path / "out", "greedy")
    assert result.exit_code == 1, result.output
    res = results_of(tmp_path / "out")
    assert res["verdict"] == "fail"
    assert values(res, "banking-tools/pass_rate[adversarial]") == (1.0, 0.0)
    assert values(res, "banking-tools/tool_name_accuracy[simple]") == (0.0, pytest.approx(1 / 6))
    statuses = rule_statuses(res)
    assert statuses[("adversarial pass rate at least 90%", "banking-tools/pass_rate[adversarial]")] == "fail"
    assert statuses[("target improves by at least 5%", "banking-tools/pass_rate")] == "fail"
    assert "[fail] adversarial pass rate at least 90%" in result.output


def test_dry_run_of_the_openai_suite_sends_nothing(endpoint, tmp_path):
    result = run_gate(tmp_path / "out", "tuned", None, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "openai:tuned" in result.output and "openai:base" in result.output
    assert endpoint.count() == 0
    assert not (tmp_path / "out").exists()


# --- the demo command on the real model ---------------------------------------------------------


def reduced_example(root: Path, per_category: int = 2, per_task: int = 2) -> gate.demo.GenerativeDemoFiles:
    """A copy of the example with the first cases of each banking-tools category and of each other task."""
    folder = root / "examples" / "tool-calling"
    folder.mkdir(parents=True)
    shutil.copyfile(SUITE, folder / "suite.yaml")
    shutil.copyfile(THRESHOLDS, root / "thresholds.example.json")
    kept: dict[str, int] = {}
    subset = []
    for c in cases("banking-tools.jsonl"):
        if kept.get(c["category"], 0) < per_category:
            kept[c["category"]] = kept.get(c["category"], 0) + 1
            subset.append(c)
    write_jsonl(folder / "data" / "banking-tools.jsonl", subset)
    for name in DATA_FILES[1:]:
        write_jsonl(folder / "data" / name, cases(name)[:per_task])
    return gate.demo.GenerativeDemoFiles(root)


@pytest.mark.model
def test_generative_demo_on_smollm2_then_again_from_the_cache(tmp_path, monkeypatch):
    files = reduced_example(tmp_path / "checkout")
    monkeypatch.setattr(gate.demo, "generative_demo_files", lambda: files)
    cache, out = tmp_path / "cache", tmp_path / "out"
    first = CliRunner().invoke(cli, ["demo", "--generative", "--cache", str(cache), "--out", str(out)])
    assert first.exit_code in (0, 1), first.output
    res = results_of(out)
    assert res["verdict"] in ("pass", "fail") and res["errors"] == []
    assert (cache / "models" / "smollm2-135m-instruct" / "config.json").is_file()
    assert res["models"]["baseline"]["spec"] == res["models"]["candidate"]["spec"] == "transformers:smollm2"
    # the candidate's system prompt makes it another model for the response cache
    assert res["models"]["baseline"]["fingerprint"] != res["models"]["candidate"]["fingerprint"]

    # every metric the checklist names is produced (the embedding and human-preference rules aside)
    checklist = json.loads(THRESHOLDS.read_text(encoding="utf-8"))
    groups = {name: info["group"] for name, info in res["tasks"].items()}
    for raw, rule in zip(checklist["rules"], rules_from_data(checklist)):
        if any(word in raw["metric"] for word in ("ndcg", "spearman", "human/")):
            continue
        selected = [m for m in res["metrics"] if rule.selects(m, groups[m.split("/", 1)[0]])]
        assert selected, f"no metric for rule {raw['name']!r}"
    for metric in ("banking-tools/pass_rate[adversarial]", "intent-json/schema_compliance",
                   "general-intent/exact_match", "banking-tools/latency_p99_ms"):
        assert all(v is not None for v in values(res, metric)), metric
    statuses = {r["status"] for r in res["rules"]}
    assert "error" not in statuses
    for u in (u for info in res["tasks"].values() for u in info["usage"].values()):
        assert u["requests"] > 0 and u["cache_hits"] == 0

    again = CliRunner().invoke(cli, ["demo", "--generative", "--cache", str(cache), "--out", str(tmp_path / "again")])
    assert again.exit_code == first.exit_code, again.output
    res2 = results_of(tmp_path / "again")
    for name, info in res2["tasks"].items():
        for role, u in info["usage"].items():
            assert u["requests"] == 0 and u["cache_hits"] == info["n"], (name, role)
    assert res2["metrics"] == res["metrics"] and res2["verdict"] == res["verdict"]


def test_generative_demo_refuses_retrain():
    result = CliRunner().invoke(cli, ["demo", "--generative", "--retrain"])
    assert result.exit_code == 2
    assert "--retrain" in result.output

