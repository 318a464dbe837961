"""Issue 13, items 1 and 2: a suite cannot send the runner's secrets anywhere, and no secret gate reads
reaches public text (log, results.json, report.md, examples.jsonl, job summary, step outputs, PR comment)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gate.cli import cli
from gate.github import make_client
from tests.conftest import ROOT, read_jsonl, write_jsonl
from tests.git_checkout import commit_base, git, open_pull_request
from tests.github_emulator import GitHubEmulator
from tests.openai_server import OpenAIServer
from tests.security.conftest import SECRETS, Listener, run_action, secret_values

CASES = ROOT / "examples" / "tool-calling" / "data" / "general-intent.jsonl"
STS = ROOT / "tests" / "data" / "stsb-dev-400.jsonl"


def write_suite(folder: Path, base_url: str, key_env: str | None = "OPENAI_API_KEY", kind: str = "chat") -> Path:
    """A suite with one endpoint task: chat (a generation task on real BANKING77 cases) or embeddings (STS-B)."""
    folder.mkdir(parents=True, exist_ok=True)
    model = {"provider": "openai", "base_url": base_url, "max_retries": 0, "timeout": 10}
    if key_env is not None:
        model["api_key_env"] = key_env
    if kind == "chat":
        write_jsonl(folder / "cases.jsonl", read_jsonl(CASES)[:3])
        task = {"name": "intent", "type": "generation", "group": "target", "cases": "cases.jsonl",
                "scorers": ["exact_match"]}
    else:
        write_jsonl(folder / "sts.jsonl", read_jsonl(STS)[:12])
        task = {"name": "sts", "type": "sts", "group": "general", "data": "sts.jsonl"}
    suite = {"version": 1, "name": "hostile", "tasks": [task],
             "models": {"baseline": {**model, "model": "base"}, "candidate": {**model, "model": "cand"}}}
    path = folder / "suite.json"
    path.write_text(json.dumps(suite))
    return path


@pytest.fixture()
def runner_env(monkeypatch):
    """The runner's environment: its tokens, and a model key pasted with a trailing newline."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GH_TOKEN", "gho_personalToken0123456789abcdef")
    monkeypatch.setenv("RUNNER_TRACKING_ID", "github_0123456789abcdef-tracking")
    monkeypatch.setenv("GITHUB_PAT", "ghp_personalAccessToken0123456789ab")
    monkeypatch.delenv("GATE_KEY_VARS", raising=False)
    monkeypatch.delenv("GATE_KEY_HOSTS", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def gate(*args: object):
    return CliRunner().invoke(cli, [*map(str, args)], catch_exceptions=False)


@pytest.mark.parametrize("kind", ["chat", "embeddings"])
@pytest.mark.parametrize("variable", ["GITHUB_TOKEN", "GH_TOKEN", "ACTIONS_RUNTIME_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
                                      "RUNNER_TRACKING_ID", "GITHUB_PAT", "INPUT_SUITE"])
def test_a_suite_cannot_send_the_runners_credentials(runner_env, tmp_path, listener, variable, kind):
    suite = write_suite(tmp_path / "pr", listener.url, variable, kind)
    result = gate("run", suite, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert f"api_key_env '{variable}' is refused" in result.output
    assert "suite.json:" in result.output  # the file and the location of the model
    assert listener.requests == []
    for value in secret_values():
        assert value not in result.output


def test_the_runners_credentials_stay_refused_even_when_the_owner_lists_them(runner_env, tmp_path, listener,
                                                                              monkeypatch):
    monkeypatch.setenv("GATE_KEY_VARS", "GITHUB_TOKEN,OPENAI_API_KEY")
    result = gate("run", write_suite(tmp_path, listener.url, "GITHUB_TOKEN"), "--out", tmp_path / "out")
    assert result.exit_code == 2 and "is refused" in result.output
    assert listener.requests == []


def test_only_the_variables_the_owner_allows(runner_env, tmp_path, listener, monkeypatch):
    monkeypatch.setenv("DEPLOY_SECRET", "deploySecretValue0123456789")
    suite = write_suite(tmp_path, listener.url, "DEPLOY_SECRET")
    result = gate("run", suite, "--out", tmp_path / "out")
    assert result.exit_code == 2 and "not an allowed key variable" in result.output
    assert "GATE_KEY_VARS" in result.output and listener.requests == []
    # *_API_KEY is allowed by default, and the owner can allow more names
    assert gate("validate", write_suite(tmp_path / "b", listener.url, "ANTHROPIC_API_KEY")).exit_code == 0
    monkeypatch.setenv("GATE_KEY_VARS", "DEPLOY_*")
    assert gate("validate", suite).exit_code == 0


@pytest.mark.parametrize("kind", ["chat", "embeddings"])
def test_a_key_goes_only_to_allowed_hosts_and_never_over_remote_http(runner_env, tmp_path, monkeypatch, kind):
    # the hosts do not exist: a refusal must come before any connection
    result = gate("run", write_suite(tmp_path / "a", "https://collector.example/v1", kind=kind), "--out", tmp_path / "o")
    assert result.exit_code == 2 and "'collector.example' is not allowed" in result.output
    assert "GATE_KEY_HOSTS" in result.output
    http = write_suite(tmp_path / "b", "http://gpu-box.example:8000/v1", kind=kind)
    monkeypatch.setenv("GATE_KEY_HOSTS", "gpu-box.example")
    result = gate("run", http, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "never sent over plain http://" in result.output
    monkeypatch.setenv("GATE_KEY_HOSTS", "http://gpu-box.example:8000")
    assert gate("validate", http).exit_code == 0
    monkeypatch.setenv("GATE_KEY_HOSTS", "collector.example")
    assert gate("validate", tmp_path / "a" / "suite.json").exit_code == 0


def test_the_default_key_goes_nowhere_the_owner_did_not_allow(runner_env, tmp_path):
    """No api_key_env at all: the default OPENAI_API_KEY must not follow a base_url of the suite's choosing."""
    result = gate("run", write_suite(tmp_path, "https://collector.example/v1", key_env=None), "--out", tmp_path / "o")
    assert result.exit_code == 2 and "is not allowed" in result.output


def test_a_key_with_a_trailing_newline_is_stripped_and_never_published(runner_env, tmp_path):
    key = SECRETS["OPENAI_API_KEY"].strip()
    with OpenAIServer(api_key=key) as server:
        suite = write_suite(tmp_path, server.base_url)
        result = gate("run", suite, "--out", tmp_path / "out")
        sent = {r["headers"].get("Authorization") or r["headers"].get("authorization") for r in server.requests}
    assert result.exit_code in (0, 1), result.output  # the endpoint answered: the key worked
    assert sent == {f"Bearer {key}"}
    published = result.output + "".join(p.read_text() for p in (tmp_path / "out").iterdir() if p.is_file())
    assert key not in published


def test_gate_comment_strips_the_token_and_never_prints_it(tmp_path, monkeypatch):
    token = "ghs_commentToken0123456789abcdef"
    results = {"schema_version": 1, "suite": "s", "verdict": "pass", "models": {
        "baseline": {"spec": "a:b", "fingerprint": None}, "candidate": {"spec": "a:c", "fingerprint": None}},
        "tasks": {"t": {"type": "sts", "group": "g", "n": 3}},
        "metrics": {"t/spearman": {"baseline": 0.5, "candidate": 0.6, "delta": 0.1, "higher_is_better": True, "n": 3}},
        "rules": [], "errors": []}
    (tmp_path / "results.json").write_text(json.dumps(results))
    (tmp_path / "t.json").write_text(json.dumps({"version": 1, "rules": [{"metric": "t/spearman", "min": 0}]}))
    with GitHubEmulator(token=token) as emu:
        emu.add_pull("octo/app", 3)
        monkeypatch.setenv("GITHUB_TOKEN", token + "\n")
        monkeypatch.setenv("GITHUB_API_URL", emu.url)
        sha = make_client(token, emu.url).get_repo("octo/app").get_pull(3).head.sha
        result = gate("comment", tmp_path / "results.json", "--repo", "octo/app", "--pr", 3, "--head-sha", sha,
                      "--thresholds", tmp_path / "t.json")
        assert result.exit_code == 0, result.output
        assert len(emu.comments("octo/app", 3)) == 1
    assert token not in result.output


@pytest.mark.model
def test_action_run_publishes_no_secret_even_when_the_endpoint_echoes_it(tmp_path):
    """Acceptance: the Action with GITHUB_TOKEN, ACTIONS_RUNTIME_TOKEN and OPENAI_API_KEY (trailing newline) in its
    environment, an endpoint that echoes the Authorization header into its error: no secret in any output file,
    the comment, the summary, the step outputs or any log line."""
    workspace = tmp_path / "ws"
    with Listener() as endpoint, GitHubEmulator(token=SECRETS["GITHUB_TOKEN"]) as emu:
        emu.add_pull("octo/app", 7)
        write_suite(workspace / "eval", endpoint.url)
        commit_base(workspace)
        open_pull_request(workspace)
        event = {"number": 7, "pull_request": {"number": 7, "head": {"sha": git(workspace, "rev-parse", "HEAD^2")},
                                                "base": {"sha": git(workspace, "rev-parse", "HEAD^1")}}}
        run = run_action(workspace, tmp_path, api_url=emu.url, event=event, suite="eval/suite.json")
        comments = [c["body"] for c in emu.comments("octo/app", 7)]
        echoed = endpoint.received()
    assert run.proc.returncode == 3, run.proc.stdout  # the endpoint refused every request: error, never pass
    assert SECRETS["OPENAI_API_KEY"].strip() in echoed  # the allowed key went to the model's (loopback) server...
    assert "bad credentials" in run.everything()  # ...and its echo reached gate's text, so the checks below bite
    for name in ("GITHUB_TOKEN", "ACTIONS_RUNTIME_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"):
        assert SECRETS[name] not in echoed
    assert len(comments) == 1
    for value in secret_values():
        assert value not in run.everything()
        assert value not in comments[0]
    assert "***" in run.everything()


@pytest.mark.model
def test_action_run_of_a_hostile_suite_sends_nothing_anywhere(tmp_path):
    """Acceptance: a hostile suite naming GITHUB_TOKEN for a listener of its own: exit 2 before any request, the
    listener receives nothing, and no output holds a secret."""
    workspace = tmp_path / "ws"
    with Listener() as collector:
        write_suite(workspace / "eval", collector.url, "GITHUB_TOKEN")
        commit_base(workspace)
        run = run_action(workspace, tmp_path, event_name="push", suite="eval/suite.json")
    assert run.proc.returncode == 2
    assert collector.requests == []
    assert "::error title=gate::eval/suite.json:" in run.proc.stdout and "is refused" in run.proc.stdout
    assert "verdict<<" in run.outputs and "\nerror\n" in run.outputs
    for value in secret_values():
        assert value not in run.everything()


@pytest.mark.parametrize("url", ["https://evil.example\u2100@api.openai.com/v1", "https://api.openai.com:99999/v1",
                                 "https://api.openai.com:port/v1"])
def test_a_malformed_base_url_is_bad_input(runner_env, tmp_path, url):
    suite = write_suite(tmp_path, url)
    for args in (["validate", suite], ["run", suite, "--out", tmp_path / "out"]):
        result = gate(*args)
        assert result.exit_code == 2, result.output
        assert "is not an http(s) URL" in result.output
