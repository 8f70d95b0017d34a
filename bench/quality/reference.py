"""The fp32 quality reference, computed once per model and quality settings and kept on disk.

Every variant of a model is compared with the same reference: the fp32 PyTorch outputs of its untransformed
weights on the same text. Computing it in every point's process cost a full fp32 forward pass per point;
here it is computed on the first point of a model (a cache miss) and read back by the others.

It also keeps the reference out of the measurement: the arrays (411 MB of logits for GPT-2 at the default
settings) are written to disk and dropped before the scenario starts, and read back only for the quality
check, so a point's peak RSS is the system under test's, not the quality check's.

The cache key is the model entry, the seed, the quality settings, the weights' files (size and mtime) and
the torch and transformers versions; a folder is written whole or not at all (bench/cache.py).
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..cache import build_once, cache_key
from ..config import ModelSpec, QualitySettings


def weights_fingerprint(path: str | None) -> list:
    """Size and mtime of the files holding the weights, so a changed file is a different reference."""
    if not path:
        return []
    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def _versions() -> dict[str, str | None]:
    out = {}
    for lib in ("torch", "transformers"):
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = None
    return out


def reference_key(spec: ModelSpec, seed: int, quality: QualitySettings, loaded: Any) -> dict:
    return {"model": spec.model_dump(mode="json"), "seed": seed, "quality": quality.model_dump(mode="json"),
            "task": loaded.task, "weights": loaded.weights,
            "files": weights_fingerprint(loaded.provenance.get("path")), **_versions()}


class StoredReference:
    """A reference on disk: `ensure()` before the model changes, `load()` after the timed window."""

    def __init__(self, spec: ModelSpec, seed: int, quality: QualitySettings, loaded: Any, cache_dir: Path):
        self.folder = Path(cache_dir) / "quality" / cache_key(reference_key(spec, seed, quality, loaded))
        self.cache_hit: bool | None = None

    def ensure(self, compute) -> None:
        """Write the reference unless it is already there; `compute()` returns the list of arrays."""

        def build(tmp: Path) -> None:
            outputs = compute()
            for i, array in enumerate(outputs):
                np.save(tmp / f"ref-{i}.npy", np.ascontiguousarray(array, dtype=np.float32))
            (tmp / "count").write_text(str(len(outputs)))

        self.cache_hit = build_once(self.folder, build)

    def load(self) -> list[np.ndarray]:
        count = int((self.folder / "count").read_text())
        return [np.load(self.folder / f"ref-{i}.npy") for i in range(count)]
