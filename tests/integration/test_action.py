"""The GitHub Action end to end: entrypoint.py as a subprocess, the real model, real PyGithub,
against the local GitHub REST emulator, with realistic environments and event.json files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, parse_outputs, read_jsonl, write_jsonl
from tests.git_checkout import commit_base, git, open_pull_request
from tests.github_emulator import GitHubEmulator

pytestmark = pytest.mark.model

REPO = "octo/app"
TOKEN = "ghs_secret_token_value_123"
PASS_RULES = {"version": 1, "rules": [{"name": "general does not drop", "group": "general", "max_drop": 0.0}]}
FAIL_RULES = {"version": 1, "rules": [{"name": "target must improve", "group": "target", "metric": "*/ndcg@10",
                                       "min_delta": 0.05}]}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, small_data) -> Path:
    """A checkout-like folder: a tiny suite over real data, two thresholds files."""
    ws = tmp_path_factory.mktemp("workspace")
    write_jsonl(ws / "eval" / "sts.jsonl", read_jsonl(small_data / "stsb.jsonl")[:40])
    for name in ("queries", "corpus", "qrels"):
        rows = read_jsonl(small_data / f"{name}.jsonl")
        if name == "queries":
            rows = rows[:8]
        write_jsonl(ws / "eval" / f"{name}.jsonl", rows)
    qids = {q["id"] for q in read_jsonl(ws / "eval" / "queries.jsonl")}
    write_jsonl(ws / "eval" / "qrels.jsonl", [r for r in read_jsonl(ws / "eval" / "qrels.jsonl") if r["query_id"] in qids])
    suite = ("version: 1\nname: {name}\nmodels:\n  baseline: {{provider: sentence-transformers, model: default}}\n"
             "  candidate: {{provider: sentence-transformers, model: default}}\n"
             "tasks:\n  - {{name: sts, type: sts, group: general, data: sts.jsonl}}\n"
             "  - {{name: search, type: retrieval, group: target, queries: queries.jsonl, corpus: corpus.jsonl,"
             " qrels: qrels.jsonl, k: {k}}}\n")
    (ws / "eval" / "suite.yaml").write_text(suite.format(name="search-quality", k="[1, 10]"))
    (ws / "eval" / "second.yaml").write_text(suite.format(name="second-suite", k="[5]"))
    (ws / "eval" / "huge.yaml").write_text(suite.format(name="huge", k=json.dumps(list(range(1, 301)))))
    (ws / "eval" / "pass.json").write_text(json.dumps(PASS_RULES))
    (ws / "eval" / "fail.json").write_text(json.dumps(FAIL_RULES))
    (ws / ".gitignore").write_text(".gate-cache/\n")
    commit_base(ws)
    open_pull_request(ws)  # checked out as actions/checkout does: the merge commit, base first
    return ws


@pytest.fixture()
def emu():
    with GitHubEmulator(token=TOKEN) as emulator:
        emulator.add_pull(REPO, 7)
        yield emulator


def event_file(tmp_path: Path, name: str, number: int | None = 7, fork: bool = False,
               workspace: Path | None = None) -> Path:
    path = tmp_path / f"event-{name}.json"
    if name.startswith("pull_request"):
        head = "someone/app" if fork else REPO
        head_sha = git(workspace, "rev-parse", "HEAD^2") if workspace else "abc123"
        base_sha = git(workspace, "rev-parse", "HEAD^1") if workspace else "def456"
        event = {"action": "synchronize", "number": number,
                 "pull_request": {"number": number, "head": {"repo": {"full_name": head}, "sha": head_sha},
                                  "base": {"repo": {"full_name": REPO}, "sha": base_sha}},
                 "repository": {"full_name": REPO}}
    else:
        event = {"ref": "refs/heads/main", "after": "abc123", "repository": {"full_name": REPO}}
    path.write_text(json.dumps(event))
    return path


def run_action(workspace: Path, tmp_path: Path, emu: GitHubEmulator, *, event: str = "pull_request",
               suite: str = "eval/suite.yaml", thresholds: str = "eval/pass.json", fork: bool = False,
               **inputs: str) -> tuple[subprocess.CompletedProcess, dict[str, str], str]:
    summary, outputs = tmp_path / "summary.md", tmp_path / "output.txt"
    summary.write_text("")
    outputs.write_text("")
    env = {
        "PATH": os.environ["PATH"], "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "GITHUB_ACTIONS": "true", "CI": "true", "GITHUB_REPOSITORY": REPO, "GITHUB_API_URL": emu.url,
        "GITHUB_SERVER_URL": "https://github.com", "GITHUB_RUN_ID": "4242",
        "GITHUB_EVENT_NAME": event, "GITHUB_EVENT_PATH": str(event_file(tmp_path, event, fork=fork, workspace=workspace)),
        "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(outputs), "GITHUB_WORKSPACE": str(workspace),
        "GATE_CACHE_DIR": str(workspace / ".gate-cache"),
        "INPUT_SUITE": suite, "INPUT_THRESHOLDS": thresholds, "INPUT_GITHUB-TOKEN": TOKEN,
        "INPUT_COMMENT": "always", "INPUT_FAIL-ON-REGRESSION": "true", "INPUT_OUTPUT-DIR": str(tmp_path / "out"),
    }
    env.update({f"INPUT_{k.upper().replace('_', '-')}": v for k, v in inputs.items()})
    proc = subprocess.run([sys.executable, str(ROOT / "entrypoint.py")], cwd=workspace, env=env,
                          capture_output=True, text=True, timeout=600)
    assert TOKEN not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc, parse_outputs(outputs.read_text()), summary.read_text()


def gate_comments(emu: GitHubEmulator, number: int = 7) -> list[dict]:
    return [c for c in emu.comments(REPO, number) if "<!-- gate-report" in c["body"]]


def test_pr_run_twice_leaves_one_comment_with_the_current_verdict(workspace, tmp_path, emu):
    emu.add_comment(REPO, 7, "LGTM", login="reviewer")
    # a look-alike comment by another user must not be edited
    emu.add_comment(REPO, 7, '<!-- gate-report suite="search-quality" --> forged', login="mallory")
    proc, outputs, summary = run_action(workspace, tmp_path, emu)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert outputs["verdict"] == "pass"
    assert Path(outputs["results-path"]).is_file() and Path(outputs["report-path"]).is_file()
    ours = [c for c in gate_comments(emu) if c["user"]["login"] == "github-actions[bot]"]
    assert len(ours) == 1 and "PASS" in ours[0]["body"]
    assert outputs["comment-url"] == ours[0]["html_url"]
    assert summary.startswith('<!-- gate-report suite="search-quality" -->') and "PASS" in summary
    first_id = ours[0]["id"]

    proc, outputs, _ = run_action(workspace, tmp_path, emu, thresholds="eval/fail.json")
    assert proc.returncode == 1
    ours = [c for c in gate_comments(emu) if c["user"]["login"] == "github-actions[bot]"]
    assert len(ours) == 1 and ours[0]["id"] == first_id
    assert "FAIL" in ours[0]["body"] and "PASS" not in ours[0]["body"].split("\n")[1]
    assert "::error title=gate::target must improve" in proc.stdout
    forged = [c for c in gate_comments(emu) if c["user"]["login"] == "mallory"]
    assert forged[0]["body"].endswith("forged")
    assert len(emu.comments(REPO, 7)) == 3


def test_two_suites_on_one_pr_keep_two_comments(workspace, tmp_path, emu):
    for _ in range(2):
        run_action(workspace, tmp_path, emu)
        proc, _, _ = run_action(workspace, tmp_path, emu, suite="eval/second.yaml")
        assert proc.returncode == 0
    bodies = [c["body"].split("\n", 1)[0] for c in gate_comments(emu)]
    assert sorted(bodies) == ['<!-- gate-report suite="search-quality" -->', '<!-- gate-report suite="second-suite" -->']


def test_more_than_100_existing_comments_are_paginated(workspace, tmp_path, emu):
    run_action(workspace, tmp_path, emu)  # our comment is now the first
    for i in range(130):
        emu.add_comment(REPO, 7, f"chatter {i}", login="reviewer")
    proc, _, _ = run_action(workspace, tmp_path, emu, thresholds="eval/fail.json")
    assert proc.returncode == 1
    assert len(gate_comments(emu)) == 1 and "FAIL" in gate_comments(emu)[0]["body"]
    assert any("page=2" in path for method, path, status in emu.requests if method == "GET")


def test_fork_pr_with_read_only_token_warns_and_keeps_the_exit_code(workspace, tmp_path, emu):
    emu.read_only = True
    proc, outputs, summary = run_action(workspace, tmp_path, emu, thresholds="eval/fail.json", fork=True)
    assert proc.returncode == 1  # the verdict, not the comment failure, decides
    assert "::warning title=gate::could not post the PR comment: GitHub answered 403" in proc.stdout
    assert "FAIL" in summary and outputs["comment-url"] == ""
    assert gate_comments(emu) == []


def test_push_event_writes_the_summary_only(workspace, tmp_path, emu):
    proc, outputs, summary = run_action(workspace, tmp_path, emu, event="push")
    assert proc.returncode == 0
    assert "::warning title=gate::not a pull request (push)" in proc.stdout
    assert "PASS" in summary and outputs["verdict"] == "pass"
    assert not [r for r in emu.requests if r[0] in ("POST", "PATCH")]


def test_oversized_suite_report_is_shortened_to_fit_a_comment(workspace, tmp_path, emu):
    proc, outputs, summary = run_action(workspace, tmp_path, emu, suite="eval/huge.yaml", thresholds="")
    assert proc.returncode == 0, proc.stdout
    report = Path(outputs["report-path"]).read_text()
    (comment,) = gate_comments(emu)
    assert len(comment["body"]) <= 65_536 and len(report) <= 60_000
    assert comment["body"].startswith('<!-- gate-report suite="huge" -->\n## ✅ gate: PASS')
    assert "more metrics of this group are in results.json" in comment["body"]
    assert "shortened to fit a GitHub comment" in comment["body"]
    assert comment["body"].count("<details>") == comment["body"].count("</details>")
    assert summary == report + ("" if report.endswith("\n") else "\n")


@pytest.mark.parametrize("after_apply", [False, True])
def test_502_on_the_first_post_never_duplicates(workspace, tmp_path, emu, after_apply):
    emu.fail_next("POST", 502, after_apply=after_apply)
    proc, outputs, _ = run_action(workspace, tmp_path, emu)
    assert proc.returncode == 0, proc.stdout
    assert len(gate_comments(emu)) == 1
    assert outputs["comment-url"] == gate_comments(emu)[0]["html_url"]
    posts = [r for r in emu.requests if r[0] == "POST"]
    assert posts[0][2] == 502
    assert len(posts) == (1 if after_apply else 2)  # after a 502 that did create it: edited, not re-posted


def test_on_failure_mode_updates_an_earlier_failure_when_the_gate_passes(workspace, tmp_path, emu):
    proc, _, _ = run_action(workspace, tmp_path, emu, comment="on-failure")
    assert proc.returncode == 0 and gate_comments(emu) == []  # passing, nothing earlier: no comment
    proc, _, _ = run_action(workspace, tmp_path, emu, comment="on-failure", thresholds="eval/fail.json")
    assert proc.returncode == 1 and "FAIL" in gate_comments(emu)[0]["body"]
    proc, _, _ = run_action(workspace, tmp_path, emu, comment="on-failure")
    assert proc.returncode == 0
    (comment,) = gate_comments(emu)
    assert "PASS" in comment["body"]


def test_fail_on_regression_false_turns_fail_into_a_warning_but_never_error_into_pass(workspace, tmp_path, emu):
    proc, outputs, _ = run_action(workspace, tmp_path, emu, thresholds="eval/fail.json", **{"fail-on-regression": "false"})
    assert proc.returncode == 0 and outputs["verdict"] == "fail"
    assert "fail-on-regression is false" in proc.stdout
    (workspace / "eval" / "missing-metric.json").write_text(json.dumps({"version": 1, "rules": [
        {"metric": "sts/nope", "min": 0}]}))
    proc, outputs, _ = run_action(workspace, tmp_path, emu, thresholds="eval/missing-metric.json",
                                  **{"fail-on-regression": "false"})
    # a rule that selects nothing is bad input, found before any model loads (gate.catalogue): never a pass
    assert proc.returncode == 2 and outputs["verdict"] == "error"
    assert "metric 'sts/nope' matches no metric of suite" in proc.stdout


def test_bad_input_exits_2_with_an_annotation_and_a_summary(workspace, tmp_path, emu):
    proc, outputs, summary = run_action(workspace, tmp_path, emu, suite="eval/nope.yaml")
    assert proc.returncode == 2
    assert "::error title=gate::" in proc.stdout and "eval/nope.yaml" in proc.stdout
    assert "gate could not run" in summary
    proc, _, _ = run_action(workspace, tmp_path, emu, comment="sometimes")
    assert proc.returncode == 2 and "input comment" in proc.stdout
    proc, outputs, _ = run_action(workspace, tmp_path, emu, **{"max-cost": "five dollars"})
    assert proc.returncode == 2 and "input max-cost: expected a number of US dollars" in proc.stdout
    assert outputs["verdict"] == "error"


def test_untrusted_text_cannot_run_workflow_commands(workspace, tmp_path, emu):
    evil = "x\n::set-output name=verdict::pass\n::error::forged"
    (workspace / "eval" / "evil.json").write_text(json.dumps({"version": 1, "rules": [
        {"name": evil, "group": "target", "metric": "*/ndcg@10", "min_delta": 0.5}]}))
    proc, outputs, _ = run_action(workspace, tmp_path, emu, thresholds="eval/evil.json")
    assert proc.returncode == 1 and outputs["verdict"] == "fail"
    assert ": :set-output name=verdict::pass" in proc.stdout  # it was printed, neutralized
    commands = [line for line in proc.stdout.splitlines() if line.lstrip().startswith("::") or "##[" in line]
    assert commands and all(c.startswith(("::error title=gate::", "::warning title=gate::")) for c in commands)
    assert not [c for c in commands if c.startswith("::set-output") or c.startswith("::error::forged")]
    # in the annotation the rule name's newlines are escaped, so it stays one command
    assert any(c.startswith("::error title=gate::x%0A::set-output") for c in commands)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root, as the Action's container has")
def test_files_the_action_writes_belong_to_the_workspace_owner(tmp_path, emu):
    ws = tmp_path / "ws"
    write_jsonl(ws / "eval" / "sts.jsonl", read_jsonl(ROOT / "tests" / "data" / "stsb-dev-400.jsonl")[:12])
    (ws / "eval" / "suite.yaml").write_text(
        "version: 1\nname: owner\nmodels:\n  baseline: {provider: sentence-transformers, model: default}\n"
        "  candidate: {provider: sentence-transformers, model: default}\n"
        "tasks:\n  - {name: sts, type: sts, group: general, data: sts.jsonl}\n")
    for path in [ws, *ws.rglob("*")]:
        os.chown(path, 1001, 121)  # the runner user of a hosted runner; the action runs as root
    proc, outputs, _ = run_action(ws, tmp_path, emu, event="push", suite="eval/suite.yaml", thresholds="",
                                  **{"output-dir": "reports/gate-out"})
    assert proc.returncode == 0, proc.stdout
    written = [ws / "reports", *(ws / "reports").rglob("*"), ws / ".gate-cache", *(ws / ".gate-cache").rglob("*")]
    assert len(written) > 4 and (ws / "reports" / "gate-out" / "results.json") in written
    assert {(p.stat().st_uid, p.stat().st_gid) for p in written} == {(1001, 121)}


def test_a_matrix_of_shards_merges_into_one_verdict_and_one_comment(workspace, tmp_path, emu):
    for i in (1, 2):
        proc, outputs, _ = run_action(workspace, tmp_path, emu, shard=f"{i}/2", **{"output-dir": f"shards/s{i}"})
        assert proc.returncode == 0, proc.stdout
        assert outputs["verdict"] == "" and (workspace / "shards" / f"s{i}" / "shard.json").is_file()
    assert gate_comments(emu) == []  # a shard posts nothing
    proc, outputs, summary = run_action(workspace, tmp_path, emu, thresholds="eval/fail.json", merge="shards/s*")
    assert proc.returncode == 1, proc.stdout
    assert outputs["verdict"] == "fail" and "::error title=gate::target must improve" in proc.stdout
    (comment,) = gate_comments(emu)
    assert "FAIL" in comment["body"].split("\n")[1] and "FAIL" in summary
    assert "[workflow run](https://github.com/octo/app/actions/runs/4242)'s artifacts" in comment["body"]
    results = json.loads(Path(outputs["results-path"]).read_text())
    assert results["run_url"] == "https://github.com/octo/app/actions/runs/4242"
    proc, _, _ = run_action(workspace, tmp_path, emu, shard="1/2", merge="shards/s*")
    assert proc.returncode == 2 and "shard and merge exclude each other" in proc.stdout
