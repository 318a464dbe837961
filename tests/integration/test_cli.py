"""The CLI end to end with the real default model: exit codes 0/1/2/3 and every bad input."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from gate.cli import cli
from gate.documents import load_schema
from tests.conftest import ROOT, read_jsonl, write_jsonl

pytestmark = pytest.mark.model


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def thresholds(tmp_path: Path, *rules: dict, name: str = "thresholds.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"version": 1, "rules": list(rules)}))
    return path


def gate_run(suite: Path, out: Path, cache: Path, *extra: str):
    return invoke("run", suite, "--out", out, "--cache", cache, "-q", *extra)


def assert_valid_results(out: Path) -> dict:
    results = json.loads((out / "results.json").read_text())
    jsonschema.Draft202012Validator(load_schema("results")).validate(results)
    return results


# --- help ---------------------------------------------------------------------------------

def test_every_command_has_help_with_an_example():
    for name in cli.commands:
        result = invoke(name, "--help")
        assert result.exit_code == 0, name
        assert "Example" in result.output, name
        assert len(result.output.splitlines()) > 5, name


def test_help_does_not_import_torch():
    code = ("import sys; from click.testing import CliRunner; from gate.cli import cli; "
            "[CliRunner().invoke(cli, a) for a in (['--help'], ['run', '--help'], ['demo', '--help'])]; "
            "heavy = [m for m in ('torch', 'sentence_transformers', 'transformers', 'numpy') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- exit codes with the real model ------------------------------------------------------------

def test_exit_0_pass_writes_valid_results_report_and_examples(small_suite, tmp_path, embedding_cache_dir):
    rules = thresholds(tmp_path, {"name": "no general regression", "group": "general", "max_drop": 0.0},
                       {"metric": "cranfield/ndcg@10", "min": 0.2})
    result = gate_run(small_suite, tmp_path / "out", embedding_cache_dir, "--thresholds", rules)
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output
    results = assert_valid_results(tmp_path / "out")
    assert results["verdict"] == "pass"
    assert results["tasks"]["stsb"] == {**results["tasks"]["stsb"], "type": "sts", "group": "general", "n": 300}
    assert results["tasks"]["cranfield"]["n"] == 40
    files = results["tasks"]["cranfield"]["data_files"]
    assert set(files) == {"queries", "corpus", "qrels"}
    combined = hashlib.sha256("".join(f"{k}={files[k]};" for k in sorted(files)).encode()).hexdigest()
    assert results["tasks"]["cranfield"]["data_sha256"] == combined
    assert results["tasks"]["stsb"]["data_files"]["data"] == hashlib.sha256(
        (small_suite.parent / "stsb.jsonl").read_bytes()).hexdigest()
    assert results["models"]["baseline"]["fingerprint"].startswith("sha256:")
    m = results["metrics"]["stsb/spearman"]
    assert m["baseline"] == m["candidate"] and m["delta"] == 0.0 and m["higher_is_better"] is True
    for k in (1, 5, 10):
        for name in ("recall", "precision", "mrr", "ndcg", "map"):
            assert f"cranfield/{name}@{k}" in results["metrics"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert report.startswith('<!-- gate-report suite="small" -->')
    assert "| `stsb/spearman` |" in report
    # the suite compares the default model with itself: said at the top of the report and under the verdict line
    assert results["models"]["candidate"]["same_as_baseline"] is True
    assert report.splitlines()[3:6] == [
        "> [!WARNING]", "> **The candidate is the baseline:** both models have the same fingerprint and options, "
        "so every difference below is noise and every rule that requires an improvement fails for that reason.", ""]
    assert result.output.splitlines()[1] == ("  note: the candidate is the baseline (same fingerprint and options): "
                                             "every difference is noise, and every rule that requires an "
                                             "improvement fails for that reason")
    examples = read_jsonl(tmp_path / "out" / "examples.jsonl")
    assert len(examples) == 300 + 40
    assert {"cosine", "gold"} <= set(examples[0]["baseline"])
    assert "ndcg@10" in examples[-1]["candidate"] and len(examples[-1]["candidate"]["top"]) == 10


def test_exit_1_fail_on_a_real_finetuned_candidate(small_suite, tmp_path, embedding_cache_dir, tiny_finetune):
    rules = thresholds(tmp_path, {"name": "target improves by 50%", "group": "target", "metric": "*/ndcg@10",
                                  "min_delta": 0.5, "relative": True},
                       {"name": "loose", "metric": "stsb/spearman", "min": 0.0})
    result = gate_run(small_suite, tmp_path / "out", embedding_cache_dir, "--thresholds", rules,
                      "--candidate", f"sentence-transformers:{tiny_finetune}")
    assert result.exit_code == 1, result.output
    results = assert_valid_results(tmp_path / "out")
    assert results["verdict"] == "fail"
    assert results["models"]["candidate"]["fingerprint"] != results["models"]["baseline"]["fingerprint"]
    assert "same_as_baseline" not in results["models"]["candidate"]
    assert results["metrics"]["stsb/spearman"]["delta"] != 0.0  # a really different model
    report = (tmp_path / "out" / "report.md").read_text()
    assert report.index("target improves by 50%") < report.index("| ✅ pass | loose")  # failing rules first


def test_a_rule_that_selects_nothing_is_bad_input_before_any_model_loads(small_suite, tmp_path):
    rules = tmp_path / "thresholds.json"  # one rule a line
    rules.write_text('{"version": 1, "rules": [\n' + ",\n".join("  " + json.dumps(r) for r in [
        {"metric": "stsb/spearmann", "min": 0.1}, {"metric": "*/ndgc@10", "min": 0.1},
        {"group": "generl", "max_drop": 0.05}, {"metric": "tickets/recall@10", "max_drop": 0},
        {"metric": "human/preference", "min": 0.6, "optional": True}]) + "\n]}\n")
    # the candidate does not exist: the rules are checked before any model is even looked at
    result = invoke("run", small_suite, "--thresholds", rules, "--out", tmp_path / "out",
                    "--candidate", f"sentence-transformers:{tmp_path / 'no-such-model'}")
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert lines == [
        f"gate: {rules}:2:4 (/rules/0/metric): metric 'stsb/spearmann' matches no metric of suite 'small'; "
        "did you mean 'stsb/spearman'?",
        f"gate: {rules}:3:4 (/rules/1/metric): metric '*/ndgc@10' matches no metric of suite 'small'; "
        "did you mean '*/ndcg@10'?",
        f"gate: {rules}:4:4 (/rules/2/group): group 'generl' is not a group of suite 'small' (its groups: general, "
        "target); did you mean 'general'?",
        f"gate: {rules}:5:4 (/rules/3/metric): metric 'tickets/recall@10' names no task of suite 'small' (its "
        "tasks: stsb, cranfield)",
        "gate: 4 problems found"]
    assert not (tmp_path / "out").exists()
    # the dry run, and validate given the suite and the thresholds together, say the same
    dry = invoke("run", small_suite, "--thresholds", rules, "--dry-run")
    assert dry.exit_code == 2 and dry.output.splitlines() == lines
    checked = invoke("validate", small_suite, rules)
    assert checked.exit_code == 2
    assert checked.output.splitlines() == [f"ok: {small_suite} (suite, 2 tasks)"] + \
        [line.removeprefix("gate: ") for line in lines[:-1]] + ["gate: 1 of 2 files invalid"]


def test_exit_3_when_a_rule_metric_is_missing_from_existing_results(results_dir, tmp_path):
    # gate check judges the metrics the results hold, as before: a rule they do not satisfy is an error
    rules = thresholds(tmp_path, {"metric": "stsb/spearmann", "min": 0.1})
    result = invoke("check", results_dir / "results.json", "--thresholds", rules, "--out", tmp_path / "out")
    assert result.exit_code == 3, result.output
    results = assert_valid_results(tmp_path / "out")
    assert results["verdict"] == "error" and results["rules"][0]["status"] == "error"
    assert results["rules"][0]["message"] == "no metric in the results matches metric 'stsb/spearmann'"


def test_exit_3_when_the_candidate_will_not_load(small_suite, tmp_path, embedding_cache_dir):
    from gate.providers.sentence_transformers import default_model_path

    broken = tmp_path / "broken-model"
    shutil.copytree(default_model_path(), broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    result = gate_run(small_suite, tmp_path / "out", embedding_cache_dir, "--candidate",
                      f"sentence-transformers:{broken}")  # no thresholds at all: still never a pass
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    results = assert_valid_results(tmp_path / "out")
    assert results["verdict"] == "error"
    assert "cannot load model" in results["errors"][0]
    assert results["metrics"]["stsb/spearman"]["candidate"] is None
    assert results["metrics"]["stsb/spearman"]["baseline"] is not None


# --- check / render / validate ---------------------------------------------------------------

@pytest.fixture(scope="module")
def results_dir(small_suite, tmp_path_factory, embedding_cache_dir) -> Path:
    out = tmp_path_factory.mktemp("results")
    assert gate_run(small_suite, out, embedding_cache_dir).exit_code == 0
    return out


def test_check_reapplies_thresholds_without_loading_a_model(results_dir, tmp_path, monkeypatch):
    import gate.providers

    def no_model(*a, **k):
        raise AssertionError("gate check must not load a model")

    monkeypatch.setattr(gate.providers, "load_embedder", no_model)
    strict = thresholds(tmp_path, {"group": "target", "metric": "*/ndcg@10", "min_delta": 0.01}, name="strict.json")
    result = invoke("check", results_dir / "results.json", "--thresholds", strict, "--out", tmp_path / "strict")
    assert result.exit_code == 1, result.output
    assert assert_valid_results(tmp_path / "strict")["verdict"] == "fail"
    assert (tmp_path / "strict" / "examples.jsonl").is_file()
    lenient = thresholds(tmp_path, {"group": "general", "max_drop": 0.01}, name="lenient.json")
    result = invoke("check", results_dir / "results.json", "--thresholds", lenient, "--out", tmp_path / "lenient")
    assert result.exit_code == 0, result.output
    assert assert_valid_results(tmp_path / "lenient")["rules"][0]["metric"] in ("stsb/spearman", "stsb/pearson")


def test_render_default_and_custom_template(results_dir, tmp_path):
    result = invoke("render", results_dir / "results.json")
    assert result.exit_code == 0
    assert result.output == (results_dir / "report.md").read_text()
    template = tmp_path / "mine.md.j2"
    template.write_text("Verdict {{ verdict }} for {{ suite | md }}: {{ metric_groups['general'] | length }} metrics\n")
    result = invoke("render", results_dir / "results.json", "--template", template)
    assert result.exit_code == 0
    assert result.output.splitlines() == ['<!-- gate-report suite="small" -->', "Verdict pass for small: 2 metrics"]


def test_render_bad_template_is_bad_input(results_dir, tmp_path):
    template = tmp_path / "bad.md.j2"
    template.write_text("line one\n{% if %}\n")
    result = invoke("render", results_dir / "results.json", "--template", template)
    assert result.exit_code == 2
    assert "bad.md.j2:2" in result.output and "Traceback" not in result.output


def test_validate_reports_every_problem(small_suite, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: x\ntasks:\n  - name: a\n    type: sts\n    dta: a.jsonl\n  - name: B\n    type: sts\n    data: b.jsonl\n")
    result = invoke("validate", small_suite, bad, ROOT / "examples" / "demo" / "thresholds.json")
    assert result.exit_code == 2
    assert (f"ok: {ROOT / 'examples' / 'demo' / 'thresholds.json'} (thresholds, 4 rules; every rule selects a "
            "metric of suite 'small')") in result.output
    assert "bad.yaml:6:5 (/tasks/0/dta): unknown key 'dta'; did you mean 'data'?" in result.output
    assert "missing required key 'data'" not in result.output  # one root cause (the typo), one message
    assert "bad.yaml:7:5 (/tasks/1/name)" in result.output
    assert "1 of 3 files invalid" in result.output


def test_validate_reads_suite_data(small_data, tmp_path):
    suite = tmp_path / "suite.yaml"
    write_jsonl(tmp_path / "q.jsonl", [{"id": "1", "text": "a"}])
    write_jsonl(tmp_path / "c.jsonl", [{"id": "d1", "text": "b"}])
    write_jsonl(tmp_path / "r.jsonl", [{"query_id": "1", "doc_id": "d2", "relevance": 1}])
    suite.write_text("version: 1\nname: x\ntasks:\n  - {name: r, type: retrieval, queries: q.jsonl, corpus: c.jsonl, qrels: r.jsonl}\n")
    result = invoke("validate", suite)
    assert result.exit_code == 2
    assert "r.jsonl:1: doc_id 'd2' is not an id in c.jsonl" in result.output
    assert invoke("validate", "--no-data", suite).exit_code == 0


# --- bad input: exit 2, file + location + expectation, no traceback ----------------------------

def _suite(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(body)
    return path


STS_ROWS = [{"sentence1": f"a {i}", "sentence2": f"b {i}", "score": float(i)} for i in range(5)]


def _sts_suite(tmp_path: Path, extra: str = "", data: str = "sts.jsonl") -> Path:
    write_jsonl(tmp_path / "sts.jsonl", STS_ROWS)
    return _suite(tmp_path, f"version: 1\nname: s\nmodels:\n  baseline: {{provider: sentence-transformers, model: default}}\n"
                            f"  candidate: {{provider: sentence-transformers, model: default}}\n"
                            f"tasks:\n  - {{name: sts, type: sts, data: {data}{extra}}}\n")


def _sts_suite_with_line(tmp_path: Path, line: str) -> Path:
    suite = _sts_suite(tmp_path)
    with (tmp_path / "sts.jsonl").open("a") as fh:
        fh.write(line + "\n")
    return suite


def _empty_data(tmp_path: Path) -> Path:
    (tmp_path / "empty.jsonl").write_text("\n")
    return _sts_suite(tmp_path, data="empty.jsonl")


def _duplicate_tasks(tmp_path: Path) -> Path:
    suite = _sts_suite(tmp_path)
    return _suite(tmp_path, suite.read_text() + "  - {name: sts, type: sts, data: sts.jsonl}\n")


BAD_INPUTS = {
    "unknown key": (lambda p: _sts_suite(p, ", grup: general"), ["suite.yaml:7:", "unknown key 'grup'", "did you mean 'group'"]),
    "wrong type": (lambda p: _suite(p, "version: 1\nname: s\ntasks:\n  - {name: r, type: retrieval, queries: q, corpus: c, qrels: r, k: [10, ten]}\n"),
                   ["suite.yaml:4:", "/tasks/0/k/1", "expected integer, got string \"ten\""]),
    "missing data file": (lambda p: _sts_suite(p, data="nope.jsonl"), ["nope.jsonl", "STS data file not found"]),
    "empty data file": (_empty_data, ["empty.jsonl", "has no rows", "sentence1, sentence2, score"]),
    "malformed line": (lambda p: _sts_suite_with_line(p, '{"sentence1": "x", "sentence2": "y", "score": 1'),
                       ["sts.jsonl:6:", "invalid JSON"]),
    "wrong field type": (lambda p: _sts_suite_with_line(p, '{"sentence1": "x", "sentence2": "y", "score": "high"}'),
                         ["sts.jsonl:6:", "field 'score'", "expected a number"]),
    "yaml syntax": (lambda p: _suite(p, "version: 1\nname: s\ntasks:\n  - name: a\n   type: sts\n"),
                    ["suite.yaml:5:", "invalid YAML"]),
    "duplicate task names": (_duplicate_tasks, ["suite.yaml:8:", "/tasks/1/name", "duplicate task name 'sts'"]),
    "unknown qrels ids": (lambda p: (write_jsonl(p / "q.jsonl", [{"id": "q1", "text": "t"}]),
                                     write_jsonl(p / "c.jsonl", [{"id": "d1", "text": "t"}]),
                                     write_jsonl(p / "r.jsonl", [{"query_id": "q1", "doc_id": "d1", "relevance": 1},
                                                                 {"query_id": "q9", "doc_id": "d1", "relevance": 1}]),
                                     _suite(p, "version: 1\nname: s\nmodels:\n  baseline: {provider: sentence-transformers, model: default}\n"
                                               "  candidate: {provider: sentence-transformers, model: default}\n"
                                               "tasks:\n  - {name: r, type: retrieval, queries: q.jsonl, corpus: c.jsonl, qrels: r.jsonl}\n"))[-1],
                          ["r.jsonl:2:", "query_id 'q9' is not an id in q.jsonl"]),
    "model path does not exist": (lambda p: _suite(p, "version: 1\nname: s\nmodels:\n  baseline: {provider: sentence-transformers, model: default}\n"
                                                      "  candidate: {provider: sentence-transformers, model: ./models/nope}\n"
                                                      "tasks:\n  - {name: sts, type: sts, data: sts.jsonl}\n"),
                                  ["model sentence-transformers:./models/nope", "does not exist"]),
    "no candidate model": (lambda p: _suite(p, "version: 1\nname: s\ntasks:\n  - {name: sts, type: sts, data: sts.jsonl}\n"),
                           ["suite.yaml", "no baseline model", "--baseline PROVIDER:MODEL"]),
    "missing suite": (lambda p: p / "missing.yaml", ["missing.yaml", "suite file not found"]),
    "yaml date as name": (lambda p: _suite(p, "version: 1\nname: 2024-01-01\ntasks: []\n"),
                          ["suite.yaml:3:", "/tasks"]),  # the date stays a string; the empty task list is the error
    "recursive anchors": (lambda p: _suite(p, "version: 1\nname: s\ntasks: &a\n  - {name: t, type: sts, data: *a}\n"),
                          ["suite.yaml", "recursive YAML anchors are not supported"]),
    "list as a key": (lambda p: _suite(p, "version: 1\nname: s\n? [a, b]\n: 1\ntasks: []\n"),
                      ["suite.yaml", "invalid YAML: unsupported structure"]),
    "huge relevance": (lambda p: (write_jsonl(p / "q.jsonl", [{"id": "q1", "text": "t"}]),
                                  write_jsonl(p / "c.jsonl", [{"id": "d1", "text": "t"}]),
                                  write_jsonl(p / "r.jsonl", [{"query_id": "q1", "doc_id": "d1", "relevance": 1e30}]),
                                  _suite(p, "version: 1\nname: s\nmodels:\n  baseline: {provider: sentence-transformers, model: default}\n"
                                            "  candidate: {provider: sentence-transformers, model: default}\n"
                                            "tasks:\n  - {name: r, type: retrieval, queries: q.jsonl, corpus: c.jsonl, qrels: r.jsonl}\n"))[-1],
                       ["r.jsonl:1:", "field 'relevance'", "expected an integer between"]),
    "unpaired surrogate": (lambda p: _sts_suite_with_line(p, '{"sentence1": "x\\ud800", "sentence2": "y", "score": 1}'),
                           ["sts.jsonl:6:", "unpaired surrogate"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_with_location_and_no_traceback(case, tmp_path):
    make, expected = BAD_INPUTS[case]
    suite = make(tmp_path)
    result = invoke("run", suite, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    for fragment in expected:
        assert fragment in result.output, (fragment, result.output)
    assert "Traceback" not in result.output
    assert not (tmp_path / "out" / "results.json").exists()


@pytest.mark.parametrize("args,expected", [
    (["--candidate", "sentence-transformers"], "expected PROVIDER:MODEL"),
    (["--candidate", "huggingface:foo"], "unknown provider 'huggingface'"),
    (["--seed", "x"], "'x' is not a valid integer"),
])
def test_bad_command_line_exits_2(tmp_path, args, expected):
    suite = _sts_suite(tmp_path)
    result = invoke("run", suite, *args)
    assert result.exit_code == 2 and expected in result.output, result.output


def test_bad_thresholds_file_exits_2(tmp_path):
    suite = _sts_suite(tmp_path)
    bad = thresholds(tmp_path, {"metric": "sts/spearman", "min": 0.5, "max_drop": 0.1})
    result = invoke("run", suite, "--thresholds", bad)
    assert result.exit_code == 2
    assert "thresholds.json:1:" in result.output and "/rules/0" in result.output
    assert "exactly one of the keys 'min', 'max', 'min_delta', 'max_drop', 'max_ratio'" in result.output


GATE_FILES = {
    "suite.yaml": ("version: 1\nname: s\ntasks:\n  - {name: a, type: sts, data: a.jsonl}\n", "a suite file"),
    "thresholds.json": ('{"version": 1, "rules": [{"metric": "*/spearman", "min": 0.5}]}', "a thresholds file"),
    "report.md": ('<!-- gate-report suite="s" -->\n## ✅ gate: PASS · s\n\n| a | b |\n|---|---|\n',
                  "a report (report.md)"),
    "examples.jsonl": ('{"task": "a", "id": "1"}\n', "an examples.jsonl (per-example outputs)"),
    "notes.md": ("# Notes\n\n- a: b\n", "a Markdown file"),
}


@pytest.mark.parametrize("name", list(GATE_FILES))
def test_every_command_that_reads_results_names_the_file_it_was_given(tmp_path, monkeypatch, name):
    text, what = GATE_FILES[name]
    wrong = tmp_path / name
    wrong.write_text(text, encoding="utf-8")
    rules = thresholds(tmp_path, {"metric": "*/spearman", "min": 0.5}, name="rules.json")
    expected = f"gate: {wrong}: this is {what}, expected a results.json (written by `gate run`, e.g. " \
               "gate-out/results.json)"
    for args in (["render", wrong], ["check", wrong, "--thresholds", rules, "--out", tmp_path / "out"]):
        result = invoke(*args)
        assert result.exit_code == 2 and result.output.splitlines() == [expected], (args, result.output)
    if name.endswith(".md"):
        return  # a report.md is what gate comment posts (tests/integration/test_comment.py)
    monkeypatch.setenv("GITHUB_TOKEN", "t0ken")
    result = invoke("comment", wrong, "--repo", "octo/app", "--pr", "1")
    assert result.exit_code == 2
    assert result.output.splitlines() == [expected.replace("expected a results.json", "expected a results.json "
                                                                                      "or a report.md")]


def test_validate_names_a_report_for_what_it_is(tmp_path):
    report = tmp_path / "report.md"
    report.write_text(GATE_FILES["report.md"][0], encoding="utf-8")
    result = invoke("validate", report)
    assert result.exit_code == 2
    assert result.output.splitlines() == [f"{report}: this is a report (report.md), expected a suite, thresholds or "
                                          "results file", "gate: 1 of 1 file invalid"]


def test_results_file_that_is_not_results_exits_2(tmp_path):
    path = tmp_path / "results.json"
    path.write_text('{"schema_version": 1, "suite": "x"}')
    result = invoke("render", path)
    assert result.exit_code == 2 and "missing required key 'verdict'" in result.output


# --- a suite gate has never seen: JSON suite, CSV STS data, graded qrels ------------------------

def test_unseen_suite_in_other_formats_runs_without_code_changes(tmp_path, embedding_cache_dir):
    rows = read_jsonl(ROOT / "tests" / "data" / "stsb-dev-400.jsonl")
    with (tmp_path / "pairs.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["sentence1", "sentence2", "score", "genre"])
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "genre": "dev"})
    queries = [{"id": i, "text": r["sentence1"]} for i, r in enumerate(rows)]
    corpus = [{"id": f"doc-{i}", "text": r["sentence2"]} for i, r in enumerate(rows)]
    qrels = [{"query_id": i, "doc_id": f"doc-{i}", "relevance": round(r["score"])} for i, r in enumerate(rows)]
    write_jsonl(tmp_path / "q.jsonl", queries)
    write_jsonl(tmp_path / "c.jsonl", corpus)
    write_jsonl(tmp_path / "r.jsonl", qrels)
    (tmp_path / "suite.json").write_text(json.dumps({
        "version": 1, "name": "unseen",
        "tasks": [{"name": "sts-dev", "type": "sts", "group": "general", "data": "pairs.csv"},
                  {"name": "para", "type": "retrieval", "group": "target", "queries": "q.jsonl", "corpus": "c.jsonl",
                   "qrels": "r.jsonl", "k": [3, 20]}]}))
    rules = thresholds(tmp_path, {"metric": "*/spearman", "min": 0.5}, {"metric": "para/ndcg@20", "max_drop": 0.0})
    result = invoke("run", tmp_path / "suite.json", "--baseline", "sentence-transformers:default", "--candidate",
                    "sentence-transformers:default", "--thresholds", rules, "--out", tmp_path / "out",
                    "--cache", embedding_cache_dir, "-q")
    assert result.exit_code == 0, result.output
    results = assert_valid_results(tmp_path / "out")
    expected_n = sum(1 for q in qrels if q["relevance"] > 0)
    assert results["tasks"]["para"]["n"] == expected_n
    assert results["tasks"]["para"]["notes"] == [f"{len(rows) - expected_n} of {len(rows)} queries have no relevant document and were skipped"]
    assert set(results["metrics"]) >= {"sts-dev/spearman", "para/recall@3", "para/map@20"}
    assert results["metrics"]["sts-dev/spearman"]["n"] == 400


def test_cache_that_is_a_file_is_bad_input(tmp_path):
    suite = _sts_suite(tmp_path)
    (tmp_path / "afile").write_text("x")
    result = invoke("run", suite, "--cache", tmp_path / "afile", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "the cache must be a folder" in result.output


def test_gate_run_reads_gate_cache_dir_as_the_action_and_the_demo_do(tmp_path, monkeypatch):
    suite = _sts_suite(tmp_path)
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("GATE_CACHE_DIR", str(tmp_path / "afile"))
    result = invoke("run", suite, "--out", tmp_path / "out")
    assert result.exit_code == 2 and "the cache must be a folder" in result.output
    seen = {}
    monkeypatch.setattr("gate.cli._run_loaded", lambda loaded, overrides, thresholds, out, cache, *rest:
                        seen.update(cache=cache))
    assert invoke("run", suite, "--cache", tmp_path / "given").exit_code == 0
    assert seen["cache"] == tmp_path / "given"  # --cache wins over the variable
    monkeypatch.setenv("GATE_CACHE_DIR", "")
    assert invoke("run", suite).exit_code == 0 and seen["cache"] is None  # neither: no cache


@pytest.mark.parametrize("env, tty, quiet, shown", [
    ({}, True, False, True),                                  # a terminal
    ({}, False, False, False),                                # a pipe or a log file
    ({"CI": "true"}, True, False, False),                     # CI logs stay quiet...
    ({"CI": "true", "GATE_PROGRESS": "1"}, False, False, True),  # ...unless asked
    ({"GATE_PROGRESS": "0"}, True, False, False),             # asked not to
    ({"GATE_PROGRESS": "Off"}, True, False, False),
    ({"GATE_PROGRESS": "1"}, True, True, False),              # -q wins
])
def test_progress_bars_show_on_a_terminal_outside_ci_or_when_asked(monkeypatch, env, tty, quiet, shown):
    from gate import cli as cli_module

    for name in ("CI", "GATE_PROGRESS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(cli_module.sys.stderr, "isatty", lambda: tty)
    assert cli_module._show_progress(quiet) is shown


def test_a_misspelled_category_slice_fails_once_the_data_is_read_before_any_model_loads(tmp_path):
    """A slice's categories come from the cases file: the rule is checked against the loaded tasks, after the
    data and before a model loads (the tool-calling suite's models are local LMs that take seconds to load)."""
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"version": 1, "rules": [
        {"metric": "banking-tools/pass_rate[adversrial]", "min": 0.9}]}))
    result = invoke("run", ROOT / "examples" / "tool-calling" / "suite.yaml", "--thresholds", rules,
                  "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert "did you mean 'banking-tools/pass_rate[adversarial]'?" in result.output
    assert f"{rules}:1:" in result.output
    assert "reading task banking-tools" in result.output and "loading" not in result.output
    assert not (tmp_path / "out" / "results.json").exists()
