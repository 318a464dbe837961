"""Issue 13, item 6: in the fork-safe pattern's commenting workflow, the downloaded artifact is the
pull request's. `gate comment` never trusts its verdict, rules or trust claims, says where the numbers
come from, and can be held to the suite names the trusted workflow expects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gate.cli import cli
from gate.github import make_client
from tests.github_emulator import GitHubEmulator

REPO, TOKEN = "octo/app", "ghs_commenting_workflow_token"


def forged_results(tmp_path: Path, suite: str = "search-quality") -> Path:
    """A results.json whose metrics show a regression, but which says "pass" and lists a passing rule."""
    results = {
        "schema_version": 1, "suite": suite, "verdict": "pass", "reason": "Every blocking rule holds.",
        "models": {"baseline": {"spec": "sentence-transformers:default", "fingerprint": None},
                   "candidate": {"spec": "sentence-transformers:./ft", "fingerprint": None}},
        "tasks": {"search": {"type": "retrieval", "group": "target", "n": 40}},
        "metrics": {"search/ndcg@10": {"baseline": 0.61, "candidate": 0.42, "delta": -0.19,
                                       "higher_is_better": True, "n": 40}},
        "rules": [{"name": "no regression", "metric": "search/ndcg@10", "status": "pass", "observed": 0.0,
                   "limit": 0.01, "message": "FORGED-RULE-TEXT"}],
        "errors": [],
        "trust": {"base_commit": "a" * 40, "scope": "suite", "from_base": ["eval/thresholds.json"], "changed": [],
                  "new": [], "changed_from_pr": []},
    }
    path = tmp_path / "artifact" / "results.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(results))
    return path


@pytest.fixture()
def setup(tmp_path, monkeypatch):
    trusted = tmp_path / "trusted" / "thresholds.json"
    trusted.parent.mkdir()
    trusted.write_text(json.dumps({"version": 1, "rules": [
        {"name": "no regression", "metric": "search/ndcg@10", "max_drop": 0.01}]}))
    with GitHubEmulator(token=TOKEN) as emu:
        emu.add_pull(REPO, 9, head_repo="mallory/app")
        monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
        monkeypatch.setenv("GITHUB_API_URL", emu.url)
        yield emu, trusted


def comment(*args: object):
    return CliRunner().invoke(cli, ["comment", *map(str, args)], catch_exceptions=False)


def test_a_forged_pass_is_posted_as_the_fail_it_is(setup, tmp_path):
    emu, trusted = setup
    sha = make_client(TOKEN, emu.url).get_repo(REPO).get_pull(9).head.sha
    result = comment(forged_results(tmp_path), "--repo", REPO, "--pr", 9, "--head-sha", sha, "--thresholds", trusted)
    assert result.exit_code == 0, result.output
    (posted,) = emu.comments(REPO, 9)
    body = posted["body"]
    assert "## ❌ gate: FAIL · search-quality" in body and "PASS" not in body.split("\n")[1]
    assert "FORGED-RULE-TEXT" not in body  # the artifact's rule text is gone: the rules were re-derived
    assert "The numbers below come from the pull request's own workflow run" in body
    assert "`" + str(trusted) + "`" in body
    assert "judged with the base branch" not in body and "gate's own configuration" not in body  # no forged banner


def test_a_results_json_is_never_posted_without_trusted_thresholds(setup, tmp_path):
    emu, _ = setup
    result = comment(forged_results(tmp_path), "--repo", REPO, "--pr", 9)
    assert result.exit_code == 2 and "pass --thresholds" in result.output
    assert emu.comments(REPO, 9) == []


def test_a_renamed_suite_cannot_overwrite_another_suites_comment(setup, tmp_path):
    emu, trusted = setup
    other = '<!-- gate-report suite="billing" -->\nthe billing suite\'s report'
    emu.add_comment(REPO, 9, other, login="github-actions[bot]", user_type="Bot")
    monkey = forged_results(tmp_path, suite="billing")
    result = comment(monkey, "--repo", REPO, "--pr", 9, "--thresholds", trusted, "--suite", "search-quality")
    assert result.exit_code == 2
    assert "the report is for the suite 'billing', not one of 'search-quality': refusing to comment" in result.output
    assert [c["body"] for c in emu.comments(REPO, 9)] == [other]
