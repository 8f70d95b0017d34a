"""A non-editable install carries everything the harness reads at run time, found through the package."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_built_wheel_carries_the_catalog_and_the_suites(tmp_path):
    """Defect: the catalog was found through parents[2], so `pip install .` silently had an empty catalog."""
    source = tmp_path / "source"  # built from a copy: setuptools writes build/ beside the project
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "bench", source / "bench", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)], check=True,
                   capture_output=True, timeout=300)
    (wheel,) = dist.glob("bench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    chips = sorted(p.name for p in (ROOT / "bench" / "hardware" / "chips").glob("*.yaml"))
    suites = sorted(p.name for p in (ROOT / "bench" / "suites").glob("*.yaml"))
    assert chips and suites
    assert {f"bench/hardware/chips/{c}" for c in chips} <= names
    assert {f"bench/suites/{s}" for s in suites} <= names

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    probe = ("import bench, json; from bench.hardware.catalog import load_catalog; "
             "from bench.cli._common import packaged_suites, suite_path; "
             "print(json.dumps([bench.__file__, len(load_catalog()), sorted(packaged_suites()), "
             "str(suite_path(None))]))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(site)}, check=True)
    import json

    where, n_chips, packaged, default = json.loads(out.stdout)
    assert where.startswith(str(site))
    assert n_chips == len(chips)
    assert packaged == sorted(Path(s).stem for s in suites)
    assert default.startswith(str(site)) and default.endswith("quickstart.yaml")


def test_every_shipped_yaml_exists_once():
    """Defect: bench/suites/quickstart.yaml was a byte copy of configs/quickstart.yaml."""
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "*.yaml"], capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    seen: dict[str, Path] = {}
    for path in sorted(ROOT / name for name in tracked.stdout.split()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest not in seen, f"{path} duplicates {seen[digest]}"
        seen[digest] = path
