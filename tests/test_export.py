"""`bench export --format pytest-benchmark`: a file pytest-benchmark's own loader and `compare` read, with the
statistics pytest-benchmark would have computed from the same latencies."""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys

import numpy as np
import pytest

from builders import record

from bench.cli import main
from bench.export.pytest_benchmark import stats
from bench.records.schema import Harness
from bench.records.store import append_record

pytest_benchmark = pytest.importorskip("pytest_benchmark")

QUALITY = {"verdict": "within bound", "within_bound": True, "cosine_mean": 0.9995,
           "bound": {"metric": "cosine_mean", "min": 0.99}}
WORK = {"flops": 10e9, "bytes": 1e9, "intensity": 10.0, "precision": "fp32", "compute_precision": "fp32"}
HARNESS = Harness(version="0.0.test", commit="c0ffee" * 6 + "abcd", dirty=True, source_digest="test")


def samples(median: float, seed: int, n: int = 70) -> list[float]:
    return [round(v, 4) for v in median * (1 + 0.02 * np.random.default_rng(seed).standard_normal(n))]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 64, 65, 66, 67])
def test_statistics_are_pytest_benchmarks(n):
    """Every field of pytest-benchmark's Stats, for lengths that take each of its quartile branches."""
    from pytest_benchmark.stats import Stats

    data = list(np.random.default_rng(n).lognormal(-3, 0.3, n))
    theirs = Stats()
    for value in data:
        theirs.update(value)
    ours = stats(data)
    assert {k: ours[k] for k in Stats.fields} == theirs.as_dict()
    assert ours["data"] == data and ours["iterations"] == 1


def results(tmp_path, machine: str = "box-a") -> tuple:
    """fp32 and bf16 of one shape (bf16 run in two processes), and a failed int8."""
    folder = tmp_path / "results" / machine / "suite"
    recs = [record(machine=machine, samples_ms=samples(100, 1), harness=HARNESS, metrics={"quality": QUALITY,
                                                                                         "work": WORK}),
            record(machine=machine, variant="bf16", precision="bf16", samples_ms=samples(50, 2), session="s1",
                   harness=HARNESS, metrics={"quality": QUALITY}),
            record(machine=machine, variant="bf16", precision="bf16", samples_ms=samples(52, 3), session="s2",
                   harness=HARNESS, metrics={"quality": QUALITY}),
            record(machine=machine, variant="int8", transforms=[{"name": "int8-dynamic"}], status="failed",
                   error="boom", harness=HARNESS)]
    for rec in recs:
        append_record(folder, rec)
    return folder, recs


def test_export_is_read_by_pytest_benchmarks_loader_and_compare(tmp_path, capsys):
    folder, recs = results(tmp_path)
    out = tmp_path / "bench.json"
    assert main(["export", str(folder), "--format", "pytest-benchmark", "--out", str(out)]) == 0
    assert "2 benchmark(s); 1 point(s) left out" in capsys.readouterr().out
    document = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert document["commit_info"]["id"] == HARNESS.commit and document["commit_info"]["dirty"] is True
    assert document["machine_info"]["node"] == "box-a"

    from pytest_benchmark.logger import Logger
    from pytest_benchmark.storage.file import FileStorage

    loaded = {b["fullname"]: b for b in FileStorage(tmp_path, Logger(Logger.QUIET)).load_benchmarks(str(out))}
    fp32, bf16 = recs[0], recs[1]
    assert set(loaded) == {fp32.point_id, bf16.point_id}  # the failed point is left out
    both = recs[1].metrics.samples_ms + recs[2].metrics.samples_ms  # both processes, oldest first
    assert loaded[bf16.point_id]["data"] == pytest.approx([ms / 1e3 for ms in both])
    assert loaded[bf16.point_id]["median"] == pytest.approx(statistics.median(both) / 1e3)
    assert loaded[bf16.point_id]["rounds"] == 140 and loaded[bf16.point_id]["iterations"] == 1
    extra = loaded[bf16.point_id]["extra_info"]
    assert extra["processes"] == 2 and extra["speedup_p50_verdict"] == "faster"
    assert extra["speedup_p50"] == pytest.approx(100 / 51, rel=0.03)
    assert extra["speedup_p50_ci95"][0] < extra["speedup_p50"] < extra["speedup_p50_ci95"][1]
    assert extra["quality"]["cosine_mean"] == 0.9995 and extra["memory"]["parameter_bytes"] == 2**20 * 10
    assert extra["samples_per_s"] > 0 and extra["harness"] == HARNESS.label and extra["weights"] == "real"
    (forward,) = loaded[fp32.point_id]["extra_info"]["efficiency"]  # the report's roofline figures of the point
    p50_s = statistics.median(fp32.metrics.samples_ms) / 1e3
    assert forward["phase"] == "forward" and forward["achieved_gflops"] == pytest.approx(10 / p50_s)

    table = tmp_path / "compare"
    run = subprocess.run([sys.executable, "-m", "pytest_benchmark", "compare", str(out), "--columns=median,ops,rounds",
                          f"--csv={table}"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "m · pytorch · cpu · bf16 · single-stream · b8 s128" in run.stdout
    rows = {r["name"]: r for r in csv.DictReader(open(table.with_suffix(".csv")))}
    assert float(rows[fp32.point_id]["median"]) == pytest.approx(statistics.median(fp32.metrics.samples_ms) / 1e3)
    assert int(rows[bf16.point_id]["rounds"]) == 140
    assert rows[bf16.point_id]["param:variant"] == "bf16"


def test_one_file_per_machine(tmp_path, capsys):
    results(tmp_path, "box-a")
    results(tmp_path, "box-b")
    where = tmp_path / "results"
    assert main(["export", str(where)]) == 0
    files = sorted((where / "pytest-benchmark").iterdir())
    assert [f.name for f in files] == ["box-a.json", "box-b.json"]
    assert {json.loads(f.read_text())["machine_info"]["node"] for f in files} == {"box-a", "box-b"}
    capsys.readouterr()
    assert main(["export", str(where), "--out", str(tmp_path / "one.json")]) == 2
    assert main(["export", str(where), "--format", "asv"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert "2 machines" in errors[0] and "unknown export format 'asv'" in errors[1] and "pytest-benchmark" in errors[1]
