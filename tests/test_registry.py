"""The registries find what is registered anywhere under their packages, whatever the import order."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def test_an_engine_transform_is_found_in_a_fresh_interpreter_and_the_preload_imports_no_onnxruntime():
    """The ORT transforms live in bench/backends/onnxruntime/, not in bench/variants/: the transform registry
    finds them with nothing imported beforehand, and loading every registry as the fork server does (its
    preload) imports no onnxruntime, which starts a thread that a forked child could deadlock on."""
    code = ("import sys\n"
            "from bench.variants import transforms\n"
            "cls = transforms.get('ort-int8-static')\n"
            "assert cls.__module__ == 'bench.backends.onnxruntime.transforms', cls.__module__\n"
            "from bench.backends import backends\n"
            "from bench.devices import devices\n"
            "from bench.models import model_sources\n"
            "from bench.scenarios import scenarios\n"
            "for registry in (backends, devices, model_sources, scenarios, transforms):\n"
            "    registry.names()\n"
            "assert 'onnxruntime' not in sys.modules and 'openvino' not in sys.modules\n")
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
