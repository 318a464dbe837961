"""A real git checkout shaped like the one actions/checkout makes for a ``pull_request`` event.

actions/checkout checks out ``refs/pull/N/merge``: a merge commit whose first parent is the base
branch and whose second parent is the pull request's head (``fetch-depth: 2`` fetches both). Tests
build that with the real git binary, so gate's base-commit logic meets the real thing.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Callable

_ENV = {"GIT_AUTHOR_NAME": "base", "GIT_AUTHOR_EMAIL": "base@example.com", "GIT_COMMITTER_NAME": "base",
        "GIT_COMMITTER_EMAIL": "base@example.com", "GIT_CONFIG_NOSYSTEM": "1"}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", *args], cwd=repo,
                          env={**os.environ, **_ENV, "HOME": str(repo)}, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def commit_base(repo: Path) -> str:
    """Make ``repo`` a repository whose one commit (the base branch) holds its files; return its sha."""
    if not (repo / ".git").exists():
        git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", "base")
    return git(repo, "rev-parse", "HEAD")


def open_pull_request(repo: Path, change: Callable[[Path], None] | None = None) -> tuple[str, str]:
    """Commit ``change`` on a branch off the current base and check out the merge commit, as actions/checkout
    does for a pull_request event. Returns (base sha, head sha)."""
    base = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-B", "pr", base)
    if change is not None:
        change(repo)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", "pull request")
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "--detach", base)
    git(repo, "merge", "-q", "--no-ff", "--no-edit", "-m", "Merge pull request", head)
    return base, head
