"""Issue 13, item 11: the workflows this repository runs and the ones it tells users to copy pin every
third-party action by commit, and do not leave the token in the checkout's git config."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

WORKFLOWS = sorted([*(ROOT / ".github" / "workflows").glob("*.yml"), *(ROOT / "examples" / "workflows").glob("*.yml")])
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def steps(path: Path) -> list[dict]:
    doc = yaml.safe_load(path.read_text())
    return [step for job in doc["jobs"].values() for step in job.get("steps", [])]


def test_there_are_workflows_to_check():
    assert len(WORKFLOWS) >= 4


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_third_party_actions_are_pinned_by_commit_with_the_version_in_a_comment(path):
    lines = path.read_text().splitlines()
    for step in steps(path):
        uses = step.get("uses")
        if uses is None or uses.startswith(("./", "docker://")) or uses.startswith("OWNER/gate@"):
            continue  # our own action (the README's placeholder) is the user's to pin
        assert PINNED.match(uses), f"{path.name}: {uses} is not pinned by a 40-hex commit sha"
        for line in [line for line in lines if f"uses: {uses}" in line]:
            assert re.search(r"# v\d+\.\d+\.\d+$", line), f"{path.name}: {line.strip()} has no version comment"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_checkout_does_not_persist_the_token_unless_a_later_step_pushes(path):
    workflow = steps(path)
    for i, step in enumerate(workflow):
        if str(step.get("uses", "")).startswith("actions/checkout@"):
            pushes = any("git push" in str(later.get("run", "")) for later in workflow[i + 1:])
            assert step.get("with", {}).get("persist-credentials") is pushes, path.name
