"""The code version recorded in model cards and manifest rows."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


@lru_cache(maxsize=1)
def code_version() -> str:
    """`<package version>+g<git sha>[.dirty]` inside a git checkout, else the package version."""
    try:
        base = version("styleops")
    except PackageNotFoundError:
        base = "0+unknown"
    root = Path(__file__).resolve().parents[1]
    try:
        sha = _git(root, "rev-parse", "--short=10", "HEAD")
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return base
    return f"{base}+g{sha}{'.dirty' if dirty else ''}" if sha else base


def _git(root: Path, *args: str) -> str:
    """The stripped output of `git -C root <args>` (raises OSError or SubprocessError when it fails)."""
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5, check=True
    ).stdout.strip()
