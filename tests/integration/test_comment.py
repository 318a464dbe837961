"""`gate comment` (the trusted half of the fork-safe pattern) and the comment helpers, against the
local GitHub emulator with real PyGithub."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gate.cli import cli
from gate.github import COMMENT_LIMIT, CommentError, StickyComment, annotations, fit_comment, make_client, \
    truncate, write_outputs
from tests.github_emulator import GitHubEmulator

REPO, TOKEN = "octo/app", "ghs_comment_token"


@pytest.fixture()
def emu(monkeypatch):
    with GitHubEmulator(token=TOKEN) as emulator:
        emulator.add_pull(REPO, 3, head_repo="someone/app")  # a fork's PR
        monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
        monkeypatch.setenv("GITHUB_API_URL", emulator.url)
        yield emulator


def results_json(tmp_path: Path, verdict: str = "fail", suite: str = "s") -> Path:
    results = {
        "schema_version": 1, "suite": suite, "verdict": verdict, "reason": "@octocat <b>bold</b> #1",
        "models": {"baseline": {"spec": "sentence-transformers:default", "fingerprint": None},
                   "candidate": {"spec": "sentence-transformers:./x", "fingerprint": None}},
        "tasks": {"t": {"type": "sts", "group": "general", "n": 3}},
        "metrics": {"t/spearman": {"baseline": 0.8, "candidate": 0.7, "delta": -0.1, "higher_is_better": True, "n": 3}},
        "rules": [], "errors": [],
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    return path


def thresholds(tmp_path: Path, verdict: str = "fail") -> Path:
    """A trusted thresholds file under which results_json()'s metrics (a drop of 0.1) get ``verdict``."""
    limit = 0.0 if verdict == "fail" else 0.2
    path = tmp_path / f"thresholds-{verdict}.json"
    path.write_text(json.dumps({"version": 1, "rules": [{"metric": "t/spearman", "max_drop": limit}]}))
    return path


def comment(*args) -> object:
    return CliRunner().invoke(cli, ["comment", *map(str, args)], catch_exceptions=False)


def head_sha(emu: GitHubEmulator) -> str:
    return make_client(TOKEN, emu.url).get_repo(REPO).get_pull(3).head.sha


def test_comment_from_results_json_renders_neutralized_and_is_sticky(emu, tmp_path):
    path = results_json(tmp_path)
    result = comment(path, "--repo", REPO, "--pr", 3, "--head-sha", head_sha(emu), "--thresholds", thresholds(tmp_path))
    assert result.exit_code == 0, result.output
    (posted,) = emu.comments(REPO, 3)
    assert result.output.strip().endswith(posted["html_url"])
    assert posted["body"].startswith('<!-- gate-report suite="s" -->')
    assert "<b>" not in posted["body"] and "@octocat" not in posted["body"]  # neutralized at rendering
    assert comment(path, "--repo", REPO, "--pr", 3, "--thresholds", thresholds(tmp_path)).exit_code == 0
    assert len(emu.comments(REPO, 3)) == 1


def test_comment_refuses_a_pull_request_whose_head_moved(emu, tmp_path):
    result = comment(results_json(tmp_path), "--repo", REPO, "--pr", 3, "--head-sha", "0" * 40,
                     "--thresholds", thresholds(tmp_path))
    assert result.exit_code == 2 and "refusing to comment" in result.output
    assert emu.comments(REPO, 3) == []


def test_on_failure_mode_with_a_pass_and_no_earlier_comment_posts_nothing(emu, tmp_path):
    result = comment(results_json(tmp_path, verdict="fail"), "--repo", REPO, "--pr", 3, "--mode", "on-failure",
                     "--thresholds", thresholds(tmp_path, "pass"))
    assert result.exit_code == 0 and emu.comments(REPO, 3) == []


def test_report_md_without_marker_or_token_is_bad_input(emu, tmp_path, monkeypatch):
    report = tmp_path / "report.md"
    report.write_text("## hello\n")
    result = comment(report, "--repo", REPO, "--pr", 3)
    assert result.exit_code == 2 and "no gate marker" in result.output
    monkeypatch.delenv("GITHUB_TOKEN")
    result = comment(results_json(tmp_path), "--repo", REPO, "--pr", 3, "--thresholds", thresholds(tmp_path))
    assert result.exit_code == 2 and "GITHUB_TOKEN" in result.output


def test_github_failing_every_time_is_exit_3_not_a_traceback(emu, tmp_path, monkeypatch):
    monkeypatch.setenv("GATE_GITHUB_BACKOFF", "0.01")
    emu.fail_next("GET", 502, times=100)
    result = comment(results_json(tmp_path), "--repo", REPO, "--pr", 3, "--thresholds", thresholds(tmp_path))
    assert result.exit_code == 3, result.output
    assert "could not post the comment" in result.output and TOKEN not in result.output


def test_sticky_post_gives_up_after_its_attempts_without_duplicates(emu):
    emu.fail_next("POST", 502, times=10)
    sleeps: list[float] = []
    sticky = StickyComment(make_client(TOKEN, emu.url), REPO, 3, attempts=3, sleep=sleeps.append)
    with pytest.raises(CommentError) as info:
        sticky.post('<!-- gate-report suite="s" -->\nbody')
    assert info.value.status == 502 and sleeps == [2.0, 4.0]
    assert emu.comments(REPO, 3) == []


def test_fit_comment_keeps_the_head_and_closes_open_blocks():
    head = '<!-- gate-report suite="s" -->\n## ❌ gate: FAIL · s\n'
    body = head + "<details><summary>x</summary>\n\n```\n" + ("| row |\n" * 20_000)
    fitted = fit_comment(body)
    assert len(fitted) <= COMMENT_LIMIT and fitted.startswith(head)
    assert fitted.count("```") % 2 == 0 and fitted.count("<details>") == fitted.count("</details>")
    assert "truncated" in fitted
    assert fit_comment(head) == head


def test_truncate_counts_bytes_when_asked():
    text = "é" * 1000  # 2 bytes each in UTF-8
    cut = truncate("x\n" + text + "\n" + text, 1500, "NOTE", encoding="utf-8")
    assert len(cut.encode("utf-8")) <= 1500 and cut.endswith("NOTE\n")


def test_annotations_are_capped_at_ten_per_level_and_escaped():
    rules = [{"name": f"r{i}", "message": "line1\nline2 100%", "status": "fail"} for i in range(12)]
    rules.append({"name": "w", "message": "m", "status": "warn"})
    lines = annotations(rules, ["model failed"])
    errors = [line for line in lines if line.startswith("::error")]
    assert len(errors) == 10 and "… and 4 more" in errors[-1]
    assert errors[0] == "::error title=gate::r0: line1%0Aline2 100%25"
    assert [line for line in lines if line.startswith("::warning")] == ["::warning title=gate::w: m"]


def test_outputs_use_a_random_heredoc_delimiter(tmp_path):
    path = tmp_path / "out"
    write_outputs(path, {"verdict": "fail", "reason": "two\nlines"})
    write_outputs(path, {"verdict": "pass"})
    lines = path.read_text().splitlines()
    delimiters = [line.split("<<")[1] for line in lines if "<<" in line]
    assert len(set(delimiters)) == 3 and all(d.startswith("ghadelimiter_") for d in delimiters)
    assert lines[:4] == ["verdict<<" + delimiters[0], "fail", delimiters[0], "reason<<" + delimiters[1]]


def test_a_marker_quoted_inside_another_comment_is_not_ours(emu):
    client = make_client(TOKEN, emu.url)
    other = StickyComment(client, REPO, 3).post('<!-- gate-report suite="other" -->\nquoting `<!-- gate-report suite="s" -->`')
    mine = StickyComment(client, REPO, 3).post('<!-- gate-report suite="s" -->\nmine')
    assert other.action == mine.action == "created"
    assert [c["body"].split("\n")[1] for c in emu.comments(REPO, 3)] == [
        'quoting `<!-- gate-report suite="s" -->`', "mine"]


def test_comment_author_override_for_github_app_tokens(emu, monkeypatch):
    emu.add_comment(REPO, 3, '<!-- gate-report suite="s" -->\nold', login="my-app[bot]", user_type="Bot")
    monkeypatch.setenv("GATE_COMMENT_AUTHOR", "my-app[bot]")
    result = StickyComment(make_client(TOKEN, emu.url), REPO, 3).post('<!-- gate-report suite="s" -->\nnew')
    assert result.action == "updated"
    assert [c["body"] for c in emu.comments(REPO, 3)] == ['<!-- gate-report suite="s" -->\nnew']
