"""The registries find what is registered anywhere under their packages, whatever the import order."""

from __future__ import annotations

import sys

from bench.registry import Registry


def test_registry_finds_entries_in_subpackages_of_every_package(tmp_path, monkeypatch):
    """An engine's transform lives in `backends/<engine>/`, not in `variants/`: a registry over both packages
    finds it on first lookup, and modules named with `_` stay private."""
    for package, body in {"alpha": "", "beta": "", "beta/engine": ""}.items():
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(body)
    (tmp_path / "alpha" / "plain.py").write_text("from regpkg_registry import things\nthings.register('plain')(1)\n")
    (tmp_path / "beta" / "engine" / "deep.py").write_text(
        "from regpkg_registry import things\nthings.register('deep')(2)\n")
    (tmp_path / "beta" / "engine" / "_private.py").write_text("raise RuntimeError('never imported')\n")
    (tmp_path / "regpkg_registry.py").write_text(
        "from bench.registry import Registry\nthings = Registry('thing', 'alpha', 'beta')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        from regpkg_registry import things

        assert isinstance(things, Registry)
        assert things.names() == ["deep", "plain"] and things.get("deep") == 2
    finally:
        for name in [n for n in sys.modules if n.split(".")[0] in ("alpha", "beta", "regpkg_registry")]:
            del sys.modules[name]
