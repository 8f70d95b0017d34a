"""The pytest plugin: a suite point timed by pytest-benchmark inside someone else's pytest suite, prepared as
`bench run` prepares it, with its provenance in the stored benchmark."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from conftest import FAST_DEFAULTS, TINY_BERT, tiny_suite

from bench.config import Suite, load_suite
from bench.plan import build_plan

pytest_plugins = ["pytester"]

SPEC = {"models": [TINY_BERT], "variants": ["bf16"], "batch_sizes": [2], "seq_lens": [16],
        "defaults": {**FAST_DEFAULTS, "min_iterations": 7, "warmup_iterations": 2}}


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """The points the tests expect, planned before `pytester` snapshots sys.modules: the registries' modules
    imported by planning must outlive the snapshot's restore, or a later import registers them twice."""
    suite = tmp_path_factory.mktemp("suite") / "suite.yaml"
    suite.write_text(yaml.safe_dump(tiny_suite(models=[TINY_BERT], variants=["fp32", "bf16"])))
    inline = build_plan(Suite.model_validate({"name": "pytest", **SPEC}), "spec").points[0]
    return inline, suite, build_plan(load_suite(suite), suite).points


def run_tests(pytester, source: str, *args: str):
    """Run a test file that uses the plugin in a fresh interpreter (torch cannot be imported twice into one), the
    plugin loaded with -p as in a checkout whose entry point is not installed."""
    pytester.makepyfile(test_models=source)
    out = pytester.path / "bench.json"
    result = pytester.runpytest_subprocess("-p", "bench.pytest_plugin", f"--benchmark-json={out}", "-p", "no:cacheprovider",
                                *args)
    return result, (json.loads(out.read_text())["benchmarks"] if out.exists() else [])


def test_an_inline_point_is_timed_with_its_provenance(planned, pytester):
    result, benches = run_tests(pytester, f"""
        def test_tiny_bert_bf16(bench_point):
            point = bench_point(spec={SPEC!r})
            assert point.variant.name == "bf16"
    """)
    result.assert_outcomes(passed=1)
    (bench,) = benches
    point = planned[0]
    assert bench["name"] == "test_tiny_bert_bf16" and bench["stats"]["iterations"] == 1
    assert bench["stats"]["rounds"] == 7 and len(bench["stats"]["data"]) == 7  # min_iterations; min_duration 0
    assert 0 < bench["stats"]["min"] <= bench["stats"]["median"] < 1.0
    extra = bench["extra_info"]
    assert extra["point_id"] == point.point_id and extra["weights"] == "random" and extra["precision"] == "bf16"
    assert extra["threads"] == {"intra_op": 1} and extra["harness"] and extra["machine_id"]
    assert "quality" in extra and extra["process"].startswith("the pytest process")


def test_a_point_of_a_suite_file_by_label(planned, pytester):
    _, suite, points = planned
    fp32 = next(p for p in points if p.variant.name == "fp32")
    result, benches = run_tests(pytester, f"""
        import pytest

        def test_fp32(bench_point):
            bench_point({str(suite)!r}, {fp32.label!r})

        def test_without_a_point(bench_point):
            bench_point({str(suite)!r})

        def test_offline_is_not_timed_here(bench_point):
            bench_point(spec={{**{SPEC!r}, "scenarios": ["offline"]}})
    """)
    result.assert_outcomes(passed=1, failed=2)
    assert [b["extra_info"]["point_id"] for b in benches] == [fp32.point_id]
    result.stdout.fnmatch_lines(["*one point (the suite has several: name one) not found; the points:*",
                                 f"*{points[1].point_id}  {points[1].label}*",
                                 "*times one query at a time (single-stream)*offline*bench run*"])


def test_the_declared_entry_point_loads_the_plugin(pytester, tmp_path, monkeypatch):
    """pyproject's pytest11 entry point, installed as an installer would (a dist-info on the path), loads the
    fixture without -p, and a -p of the same module beside it is no double registration."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    entry_points = project["project"]["entry-points"]["pytest11"]
    assert entry_points == {"bench.pytest_plugin": "bench.pytest_plugin"}
    dist = tmp_path / "site" / "bench_plugin_probe-0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bench-plugin-probe\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text("[pytest11]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(dist.parent), os.environ.get("PYTHONPATH", "")]))
    pytester.makepyfile(test_models=f"""
        def test_tiny(bench_point):
            bench_point(spec={SPEC!r})
    """)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "bench.pytest_plugin").assert_outcomes(passed=1)
