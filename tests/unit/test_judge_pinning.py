"""Which judge references are pinned: the same name gives the same model on another day."""

from __future__ import annotations

from pathlib import Path

import pytest

from gate.suite import ModelSpec
from gate.tasks.pairwise import unpinned


@pytest.mark.parametrize("model, options, pinned", [
    ("gpt-4o", (), False),
    ("gpt-4o-mini", (), False),
    ("llama3:8b", (), False),
    ("gpt-4o-2024-08-06", (), True),
    ("gpt-4-0613", (), True),
    ("claude-3-5-sonnet-20241022", (), True),
    ("ft:gpt-4o-mini-2024-07-18:acme::abc123", (), True),
    ("llama3:8b", (("revision", "sha256:0f3a"),), True),
])
def test_endpoint_judges(model, options, pinned):
    spec = ModelSpec(provider="openai", model=model, options=options)
    assert (unpinned(spec) is None) is pinned


def test_hub_judges_need_a_commit_and_local_folders_are_pinned(tmp_path: Path):
    moving = ModelSpec(provider="transformers", model="org/judge@main", base_dir=tmp_path)
    assert "follows a branch or tag" in unpinned(moving)
    commit = "0123456789abcdef0123456789abcdef01234567"
    assert unpinned(ModelSpec(provider="transformers", model=f"org/judge@{commit}", base_dir=tmp_path)) is None
    (tmp_path / "judge").mkdir()
    assert unpinned(ModelSpec(provider="transformers", model="./judge", base_dir=tmp_path)) is None
    assert unpinned(ModelSpec(provider="transformers", model="smollm2", base_dir=tmp_path)) is None
