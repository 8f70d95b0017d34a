"""Named registries for the harness's extension points (backends, scenarios, transforms, sources).

A new backend or scenario is one decorated function or class in its own module; the registry imports
every module under its packages (subpackages included) on first lookup, so nothing is registered by hand
elsewhere and nothing depends on import order: a transform that lives beside its engine
(`bench/backends/onnxruntime/`) is found as surely as one in `bench/variants/`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pkgutil
import sys
from pathlib import Path
from typing import Generic, Iterator, TypeVar

T = TypeVar("T")


def import_tree(package: str) -> None:
    """Import `package` and every module below it, skipping names that start with `_` (private helpers)."""
    pkg = importlib.import_module(package)
    for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{package}."):
        if not info.name.rsplit(".", 1)[-1].startswith("_"):
            importlib.import_module(info.name)


def load_extensions(entries: list[str]) -> None:
    """Import each extension once: a `.py` file by its path, anything else as a module name. What it registers
    with the decorators of the registries (a backend, a transform, a scenario, a device, a report section) is
    then known like the harness's own."""
    for entry in entries:
        if not entry.endswith(".py"):
            importlib.import_module(entry)
            continue
        path = Path(entry).resolve()
        name = f"bench_extension_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
        if name in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise


class Registry(Generic[T]):
    def __init__(self, kind: str, *packages: str):
        self.kind = kind
        self.packages = packages
        self._items: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str):
        def decorate(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return decorate

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for package in self.packages:
            import_tree(package)

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
