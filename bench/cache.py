"""Build-once caches: a result is built in a temporary folder and renamed into place, so a crash never
leaves half a file where a later run would take it for whole, and concurrent builders do not collide.

Exports, graph transforms and measured peaks are per machine: a cache directory is local to a node unless
an operator points every node of one kind at a shared one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def cache_key(key_parts: dict) -> str:
    """A short, stable name for a dict of identifying parts."""
    blob = json.dumps(key_parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def build_once(final: Path, build: Callable[[Path], None]) -> bool:
    """Run `build(folder)` in a temporary folder renamed to `final`, unless `final` exists; True on a cache hit.

    The rename is atomic, so a crash never leaves half a model where a later run would take it for whole.
    """
    final = Path(final)
    if final.exists():
        return True
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        build(tmp)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if final.exists():  # a concurrent run finished first: use its result
            return True
        raise
    return False


def build_artifact(folder: Path, artifact: str, build: Callable[[Path], dict], key: dict | None = None,
                   info_name: str = "info.json") -> tuple[Path, dict]:
    """`build(path) -> info` once for `folder`: the artifact file `artifact` in it, beside the info `build`
    returned (and the key that named the folder, for a reader); returns (the artifact's path, its info with
    `cache_hit`). A hit reads the info the build wrote, so times in it say what the build cost then."""
    folder = Path(folder)

    def write(tmp: Path) -> None:
        info = build(tmp / artifact)
        if key is not None:
            (tmp / "key.json").write_text(json.dumps(key, indent=1, default=str))
        (tmp / info_name).write_text(json.dumps(info, indent=1, default=str))

    hit = build_once(folder, write)
    return folder / artifact, {**json.loads((folder / info_name).read_text()), "cache_hit": hit}
