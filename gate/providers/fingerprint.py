"""Fingerprints of model folders: a hash of every weight and config file.

Two runs that report the same fingerprint evaluated the same bytes, whatever the
folder was called; a retrained model that kept its path gets a new fingerprint.
Documentation files are left out so editing a model card does not change it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_IGNORED_NAMES = {"README.md", ".gitattributes", ".DS_Store"}
_IGNORED_DIRS = {".git", "__pycache__", ".cache"}


def fingerprint_dir(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(
        p for p in path.rglob("*")
        if p.is_file() and p.name not in _IGNORED_NAMES
        and not any(part in _IGNORED_DIRS for part in p.relative_to(path).parts)
    )
    for file in files:
        rel = file.relative_to(path).as_posix().encode()
        digest.update(len(rel).to_bytes(8, "little") + rel)
        digest.update(file.stat().st_size.to_bytes(8, "little"))
        with file.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()
