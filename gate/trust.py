"""Trusted configuration: a pull request is judged by the bar of the branch it wants to merge into.

The suite, thresholds and data live in the repository, so on a pull request they are the pull
request's files: a PR that lowers a threshold, drops a task or swaps the data would pass the gate it
weakens. This module reads them *as they are on the base commit* instead:

- ``thresholds`` scope (the Action's default): the thresholds file comes from the base commit;
- ``suite`` scope: the thresholds, the suite and every file the suite names (data, the baseline's
  model folder) come from the base commit; only the candidate model comes from the pull request;
- the report opens with a banner naming the files the pull request changes, and which version was used.

It also refuses a cache folder that came with the pull request's files (forged vectors would decide
the verdict) and finds the repository root that a suite's paths must stay inside.

The base commit of a ``pull_request`` run is the first parent of the merge commit that
actions/checkout checks out (``fetch-depth: 2`` fetches it), provided its second parent is the head
the event names; otherwise the event's ``pull_request.base.sha``, if that commit is present. git is
run with ``safe.directory=*``: in a container the workspace belongs to another user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from gate.errors import BadInput

SCOPES = ("thresholds", "suite", "off")
GIT_TIMEOUT = 120


class GitError(Exception):
    """git is missing or answered with an error (the message is git's)."""


def git(cwd: Path, *args: str) -> bytes:
    """stdout of ``git args`` in ``cwd`` (no prompts, no pager, any owner of the repository)."""
    try:
        done = subprocess.run(["git", "-c", "safe.directory=*", "-c", "core.quotePath=false", *args], cwd=cwd,
                              capture_output=True, timeout=GIT_TIMEOUT, stdin=subprocess.DEVNULL,
                              env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C",
                                   # a path is a path: "':(exclude)x'" in a file name is not pathspec magic
                                   "GIT_LITERAL_PATHSPECS": "1"})
    except FileNotFoundError:
        raise GitError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} took longer than {GIT_TIMEOUT} s") from None
    if done.returncode != 0:
        raise GitError(done.stderr.decode("utf-8", "replace").strip() or f"git {args[0]} failed")
    return done.stdout


def repository_root(start: Path) -> Path | None:
    """The nearest folder at or above ``start`` that holds ``.git`` (symlinks resolved), else None."""
    folder = Path(start).resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


# --- the cache --------------------------------------------------------------------------------

def cache_refusal(cache: Path) -> str | None:
    """Why the cache folder ``cache`` must not be used, or None.

    A cache inside a git work tree that holds files git tracks came with the checkout, that is with the
    pull request: its vectors and responses would be read as if gate had computed them."""
    root = repository_root(cache if cache.exists() else cache.parent)
    if root is None:
        return None
    resolved = cache.resolve()
    try:
        relative = resolved.relative_to(root)
    except ValueError:
        return None  # a symlink out of the work tree: outside the checkout
    targets = [str(PurePosixPath(relative)) or "."]
    if cache.is_symlink() or resolved != cache.absolute():
        try:  # the link itself may be a file of the checkout
            targets.append(str(PurePosixPath(cache.absolute().relative_to(root))))
        except ValueError:
            pass
    try:
        tracked = git(root, "ls-files", "-z", "--", *targets).split(b"\0")
    except GitError as exc:
        return (f"cannot check whether the cache folder {cache} holds files from the repository ({exc}); "
                "a cache that came with a pull request could decide the verdict")
    tracked = [t for t in tracked if t]
    if tracked:
        shown = tracked[0].decode("utf-8", "replace")
        return (f"the cache folder {cache} holds {len(tracked)} file(s) tracked by git (e.g. {shown}): a cache "
                "that comes with the checked-out files (a pull request's) could hold forged results")
    return None


# --- the base commit --------------------------------------------------------------------------

def _commit(root: Path, rev: str) -> str | None:
    try:
        return git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").decode().strip() or None
    except GitError:
        return None


def pull_request_base(root: Path, event: dict[str, Any]) -> str:
    """The base commit of the pull request (or merge queue entry) that ``event`` describes, as checked out
    in ``root``."""
    pr = event.get("pull_request") if isinstance(event, dict) else None
    pr = pr if isinstance(pr, dict) else {}
    head_sha = (pr.get("head") or {}).get("sha") if isinstance(pr.get("head"), dict) else None
    base_sha = (pr.get("base") or {}).get("sha") if isinstance(pr.get("base"), dict) else None
    queued = event.get("merge_group") if isinstance(event, dict) else None
    if isinstance(queued, dict):  # a merge queue: the group's base, the commit the queue builds on
        head_sha, base_sha = None, queued.get("base_sha")
    try:
        parents = git(root, "rev-list", "--parents", "-n", "1", "HEAD").decode().split()
    except GitError as exc:
        raise BadInput(f"cannot read the checked-out commit: {exc}", root, "base-config") from None
    if len(parents) == 3 and head_sha and parents[2] == head_sha:
        return parents[1]  # actions/checkout's merge commit: base branch first, the PR's head second
    if isinstance(base_sha, str) and _commit(root, base_sha):
        return _commit(root, base_sha)  # type: ignore[return-value]
    raise BadInput("cannot find the pull request's base commit in the checkout: use actions/checkout with "
                   "`fetch-depth: 2` on the pull request's merge commit (its default ref), or fetch the base "
                   "branch; or set the input base-config to off to judge with the pull request's own files",
                   root, "base-config")


class BaseTree:
    """The files of one commit, read with git (one listing, one blob per file read), never the checkout's.

    Paths are taken as the workflow or the suite names them, not resolved in the checkout: a symlink that
    a pull request commits in place of the thresholds file must not redirect the lookup. A symlink that is
    in the base commit itself is followed inside that commit (never out of it), and written as what it
    points to."""

    MAX_LINKS = 8

    def __init__(self, root: Path, commit: str):
        self.root, self.commit = root, commit
        listing = git(root, "ls-tree", "-r", "-z", "--full-tree", commit)
        self.entries: dict[str, tuple[str, str]] = {}
        for record in listing.split(b"\0"):
            if not record:
                continue
            meta, _, path = record.partition(b"\t")
            mode, _kind, sha = meta.decode().split()
            self.entries[path.decode("utf-8", "surrogateescape")] = (mode, sha)

    def _blob(self, sha: str) -> bytes:
        return git(self.root, "cat-file", "blob", sha)

    def _under(self, relative: str) -> list[tuple[str, tuple[str, str]]]:
        prefix = relative.rstrip("/") + "/"
        return [(p, e) for p, e in self.entries.items() if p == relative or p.startswith(prefix)]

    def has(self, relative: str) -> bool:
        return bool(self._under(self._follow(relative)))

    def _follow(self, relative: str, hops: int = 0) -> str:
        """``relative`` with the commit's links (the path's own or a parent folder's) followed, inside the tree."""
        parts = PurePosixPath(relative).parts
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            entry = self.entries.get(prefix)
            if entry and entry[0] == "120000":
                if hops >= self.MAX_LINKS:
                    raise BadInput(f"in the base commit, {relative} goes through more than {self.MAX_LINKS} links",
                                   location="base-config")
                target = self._blob(entry[1]).decode("utf-8", "replace")
                joined = os.path.normpath(str(PurePosixPath(prefix).parent / target))
                if target.startswith("/") or joined == ".." or joined.startswith("../"):
                    raise BadInput(f"in the base commit, {prefix} is a link that leaves the repository",
                                   location="base-config")
                rest = "/".join(parts[i:])
                return self._follow(joined + ("/" + rest if rest else ""), hops + 1)
        return relative

    def write(self, relative: str, dest: Path, hops: int = 0) -> bool:
        """Write ``relative`` (a file, or a folder with everything in it) as it is in the commit to
        ``dest/relative``; False when the commit has nothing there."""
        real = self._follow(relative, hops)
        found = self._under(real)
        for path, (mode, sha) in found:
            if mode == "160000":
                continue  # a submodule: another repository
            name = relative + path[len(real):]
            if mode == "120000":
                if hops >= self.MAX_LINKS:
                    raise BadInput(f"in the base commit, {name} goes through more than {self.MAX_LINKS} links",
                                   location="base-config")
                self.write(name, dest, hops + 1)
                continue
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self._blob(sha))
            if mode == "100755":
                target.chmod(0o755)
        return bool(found)


def changed(root: Path, rev: str, paths: Iterable[str]) -> list[str]:
    """Which of ``paths`` (relative to ``root``, as named) differ between ``rev`` and the checked-out files;
    a path that now goes through a link of the checkout counts as changed."""
    paths = sorted(set(paths))
    if not paths:
        return []
    out = git(root, "diff", "--no-renames", "--name-only", "-z", rev, "--", *paths)
    found = {p.decode("utf-8", "replace") for p in out.split(b"\0") if p}
    for path in paths:
        parts = PurePosixPath(path).parts
        if any((root / "/".join(parts[:i])).is_symlink() for i in range(1, len(parts) + 1)):
            found.add(path)
    return sorted(found)


# --- judging with the base's configuration -----------------------------------------------------

@dataclass
class TrustedConfig:
    """What a run is judged with: the suite and thresholds files to load, and the banner's facts."""

    suite: Path
    thresholds: Path | None
    info: dict[str, Any] = field(default_factory=dict)
    #: the head checkout's root, where candidate models named by a base suite are found
    head_root: Path | None = None
    base_root: Path | None = None


def _relative(root: Path, path: Path, what: str) -> str:
    """``path`` relative to ``root`` as it is named (normalised, never resolved through a link)."""
    absolute = Path(os.path.normpath(path.absolute()))
    try:
        relative = absolute.relative_to(root)
    except ValueError:
        raise BadInput(f"the {what} is outside the repository {root}; expected a file of the checkout",
                       path) from None
    if not relative.parts or ".git" in relative.parts:
        raise BadInput(f"the {what} must be a file of the repository, not {relative}", path)
    return str(PurePosixPath(relative))


def _named(suite_rel: str, values: Any) -> set[str]:
    """Every string of a suite that, taken as a path from the suite's folder, stays in the repository."""
    out: set[str] = set()
    stack = [values]
    folder = PurePosixPath(suite_rel).parent
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str) and value and "\n" not in value and "\0" not in value and len(value) < 4096 \
                and not value.startswith(("/", "~")):
            joined = os.path.normpath(str(folder / value))
            if joined not in (".", "..") and not joined.startswith("../") and ".git" not in joined.split("/"):
                out.add(joined)
    return out


def _suite_values(path: Path) -> Any:
    from gate.documents import load_document

    return load_document(path, "suite file").data


def judge_with_base(root: Path, base: str, scope: str, suite: Path, thresholds: Path | None,
                    workdir: Path) -> TrustedConfig:
    """The files to judge with when the configuration comes from ``base`` (``scope`` as in :data:`SCOPES`).

    ``workdir`` is an empty folder of the caller's: base versions of the files are written there."""
    if scope not in SCOPES:
        raise BadInput(f"expected one of {', '.join(SCOPES)}, got {scope!r}", location="base-config")
    try:
        return _judge_with_base(root.resolve(), base, scope, suite, thresholds, workdir)
    except GitError as exc:
        raise BadInput(f"cannot read the base commit {base[:12]}: {exc}", root, "base-config") from None


def _judge_with_base(root: Path, base: str, scope: str, suite: Path, thresholds: Path | None,
                     workdir: Path) -> TrustedConfig:
    info: dict[str, Any] = {"base_commit": base, "scope": scope, "from_base": [], "changed": [],
                            "new": [], "changed_from_pr": []}
    tree = BaseTree(root, base)
    suite_rel = _relative(root, suite, "suite file")
    thresholds_rel = _relative(root, thresholds, "thresholds file") if thresholds else None
    base_root = workdir / f"base-{base[:12]}"
    base_root.mkdir(parents=True, exist_ok=True)
    result = TrustedConfig(suite=suite, thresholds=thresholds, info=info, head_root=root)

    if thresholds_rel:
        if tree.write(thresholds_rel, base_root) and (base_root / thresholds_rel).is_file():
            result.thresholds = base_root / thresholds_rel
            info["from_base"].append(thresholds_rel)
            info["changed"] += changed(root, base, [thresholds_rel])
        else:
            info["new"].append(thresholds_rel)

    head_named = {p for p in _named(suite_rel, _suite_values(suite)) if os.path.lexists(root / p)} - {suite_rel}
    if scope == "suite" and tree.write(suite_rel, base_root) and (base_root / suite_rel).is_file():
        result.suite, result.base_root = base_root / suite_rel, base_root
        base_named = {p for p in _named(suite_rel, _suite_values(result.suite)) if tree.has(p)} - {suite_rel}
        for path in base_named:
            tree.write(path, base_root)
        info["from_base"] += [suite_rel, *base_named]
        info["changed"] += changed(root, base, [suite_rel, *base_named])
    else:
        if scope == "suite":
            info["new"].append(suite_rel)
        info["changed_from_pr"] += changed(root, base, [suite_rel, *head_named])
    for key in ("from_base", "changed", "new", "changed_from_pr"):
        info[key] = sorted(set(info[key]))
    return result


def retarget_candidates(suite: Any, config: TrustedConfig) -> Any:
    """A base suite whose candidate models (local folders) are found in the pull request's checkout:
    the candidate is what the pull request proposes; everything else is the base's."""
    from gate.suite import ROLES

    if config.base_root is None or config.head_root is None:
        return suite
    base_root, head_root = config.base_root.resolve(), config.head_root

    def moved(spec: Any) -> Any:
        try:
            relative = Path(spec.base_dir).resolve().relative_to(base_root)
        except ValueError:
            return spec
        return replace(spec, base_dir=head_root / relative, root=head_root if spec.root is not None else None)

    models = {role: moved(spec) if role == "candidate" else spec for role, spec in suite.models.items()}
    tasks = [replace(t, models={r: moved(s) if r == "candidate" else s for r, s in t.models.items()})
             for t in suite.tasks]
    assert set(models) <= set(ROLES)
    return replace(suite, models=models, tasks=tasks)


def cleanup(path: Path | None) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


def resolve_ref(root: Path, ref: str) -> str:
    """The commit ``ref`` names in the repository at ``root`` (bad input when there is none)."""
    commit = _commit(root, ref)
    if commit is None:
        raise BadInput(f"no commit {ref!r} in the repository {root}; expected a branch, tag or commit of it "
                       "(fetch it first)", location="--base-ref")
    return commit


def load_for_run(suite: Path, thresholds: Path | None, *, base: str | None, scope: str, workdir: Path,
                 confine: bool = True, overrides: dict[str, Any] | None = None
                 ) -> tuple[Any, Path | None, dict[str, Any] | None, dict[str, Any]]:
    """The suite to run, the thresholds file to judge with, the banner's facts and the command line's
    models, for a run judged by the configuration of commit ``base`` (None, or scope ``off``: the
    checked-out files, no banner). In ``suite`` scope a local baseline folder given on the command line
    (or as the Action's input) is read from the base commit too: only the candidate is the PR's."""
    from gate.suite import load_suite

    overrides = dict(overrides or {})
    if base is None or scope == "off":
        return load_suite(suite, confine=confine), thresholds, None, overrides
    root = repository_root(suite.parent)
    if root is None:
        raise BadInput("the suite is not in a git repository, so its base version cannot be read; "
                       "expected a checkout (or base-config off)", suite)
    config = judge_with_base(root, base, scope, suite, thresholds, workdir)
    if config.base_root is None:
        return load_suite(suite, confine=confine), config.thresholds, config.info, overrides
    loaded = load_suite(config.suite, confine=confine, root=config.base_root.resolve() if confine else None)
    if overrides.get("baseline") is not None:
        overrides["baseline"] = _baseline_from_base(overrides["baseline"], config, base)
    return retarget_candidates(loaded, config), config.thresholds, config.info, overrides


def _baseline_from_base(spec: Any, config: TrustedConfig, base: str) -> Any:
    """A local baseline folder named on the command line, as it is in the base commit."""
    assert config.head_root is not None and config.base_root is not None
    path = spec.resolve_path()
    if spec.provider == "openai" or not path.exists():
        return spec  # an endpoint, a built-in model or a Hub reference: nothing of the checkout
    relative = _relative(config.head_root, path, "baseline model folder")
    try:
        tree = BaseTree(config.head_root, base)
        found = tree.write(relative, config.base_root)
        differs = changed(config.head_root, base, [relative]) if found else []
    except GitError as exc:
        raise BadInput(f"cannot read the base commit {base[:12]}: {exc}", location="base-config") from None
    if not found:
        config.info["new"] = sorted({*config.info["new"], relative})
        return spec
    config.info["from_base"] = sorted({*config.info["from_base"], relative})
    config.info["changed"] = sorted({*config.info["changed"], *differs})
    try:  # the same name, found from the same folder of the base tree: the report shows what was given
        return replace(spec, base_dir=config.base_root / Path(spec.base_dir).resolve().relative_to(config.head_root))
    except ValueError:
        return replace(spec, model=str(config.base_root / relative), base_dir=config.base_root)
