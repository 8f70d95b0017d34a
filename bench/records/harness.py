"""The harness version stamped on every record: package version, git commit, dirty flag, source digest.

The source digest hashes the package's own Python files, so it is exact for a non-editable install
(no git) and for a dirty checkout alike; the commit is looked up from the package's folder, never from
a guessed repository root.
"""

from __future__ import annotations

import hashlib
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from .schema import Harness

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def source_digest(package_dir: Path = PACKAGE_DIR) -> str:
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        digest.update(path.relative_to(package_dir).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _git(package_dir: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(package_dir), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _version() -> str:
    try:
        return metadata.version("bench")
    except metadata.PackageNotFoundError:
        from .. import __version__

        return __version__


@lru_cache(maxsize=1)
def current_harness(package_dir: Path = PACKAGE_DIR) -> Harness:
    commit = dirty = None
    if _git(package_dir, "rev-parse", "--is-inside-work-tree") == "true":
        commit = _git(package_dir, "rev-parse", "HEAD")
        status = _git(package_dir, "status", "--porcelain", "--untracked-files=no", "--", ".")
        dirty = bool(status) if status is not None else None
    return Harness(version=_version(), commit=commit, dirty=dirty, source_digest=source_digest(package_dir))
