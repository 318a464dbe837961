"""The lock files are the only source of versions: complete, hashed, CPU-only, and used by every install."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT

LOCKS = {"run": ROOT / "requirements.lock", "test": ROOT / "requirements-test.lock"}
CUDA = re.compile(r"^(nvidia-|triton|cuda)", re.IGNORECASE)


def name_of(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def entries(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a pip requirements file written by uv (one entry over several lines)."""
    out: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)", line)
        if match:
            current = match.group(1).lower().replace("_", "-")
            out[current] = (match.group(2), [])
        elif "--hash=sha256:" in line and current:
            out[current][1].append(line.split("--hash=sha256:")[1].split()[0])
        else:
            raise AssertionError(f"{path.name}: unexpected line {line!r}")
    return out


@pytest.fixture(scope="module")
def locks():
    return {kind: entries(path) for kind, path in LOCKS.items()}


def test_no_cuda_package_in_a_cpu_lock(locks):
    for kind, packages in locks.items():
        assert not [name for name in packages if CUDA.match(name)], kind


def test_every_package_is_pinned_with_a_hash(locks):
    for kind, packages in locks.items():
        assert len(packages) > 50
        for name, (version, hashes) in packages.items():
            assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), (kind, name)


def test_torch_is_the_cpu_build(locks):
    for packages in locks.values():
        assert packages["torch"][0] == "2.13.0+cpu"


def test_the_locks_cover_pyproject_and_agree(locks):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        assert name_of(requirement) in locks["run"], requirement
    for requirement in project["optional-dependencies"]["test"]:
        assert name_of(requirement) in locks["test"], requirement
    for name, (version, _) in locks["run"].items():
        assert locks["test"][name][0] == version, name  # one resolution: the same versions in both


def test_every_install_uses_the_locks():
    dockerfile = (ROOT / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes --no-deps -r /tmp/requirements.lock" in dockerfile
    assert "COPY requirements.lock" in dockerfile and "COPY . " not in dockerfile
    assert "--require-hashes --no-deps" in makefile
    assert "-r requirements.lock" in makefile and "-r requirements-test.lock" in makefile
    # nothing resolves versions on its own: no bare `pip install NAME` in the Makefile
    assert not re.search(r"pip install (--quiet )?[a-z]", makefile.replace("pip install --quiet --no-deps -e .", ""))
