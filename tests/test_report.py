"""Records on disk, the report's baseline and speedup arithmetic, and failed points kept visible."""

from __future__ import annotations

import json
import math

import pytest

from bench.report.frame import records_frame
from bench.report.render import build_report
from bench.results import append_record, completed_points, latest_per_point, load_records


def record(point_id, model="m", backend="pytorch", variant="fp32", precision="fp32", transforms=(),
           status="ok", p50=100.0, tput=10.0, batch=8, seq=128, device="cpu", error=None, weights="real"):
    return {
        "schema_version": 1, "run_id": point_id + "-r", "session_id": "s", "point_id": point_id,
        "status": status, "error": error,
        "config": {"model": {"name": model}, "backend": backend, "device": device, "task": "encoder",
                   "variant": {"name": variant, "precision": precision, "transforms": list(transforms)},
                   "scenario": {"name": "latency"}, "batch_size": batch, "seq_len": seq},
        "machine": {"machine_id": "test-machine"},
        "provenance": {"weights": weights},
        "metrics": {} if status != "ok" else {
            "latency": {"p50_ms": p50, "p90_ms": p50 * 1.1, "p99_ms": p50 * 1.2, "mean_ms": p50, "cv": 0.01,
                        "count": 64, "warnings": []},
            "throughput": {"samples_per_s": tput, "tokens_per_s": tput * seq},
            "memory": {"peak_rss_bytes": 2**20 * 100, "parameter_bytes": 2**20 * 10},
            "sufficient": True},
    }


def test_baseline_and_speedups():
    recs = [record("a", p50=100, tput=80), record("b", variant="bf16", precision="bf16", p50=40, tput=200),
            record("c", variant="int8", transforms=[{"name": "q"}], p50=25, tput=330),
            record("d", batch=1, p50=20, tput=50), record("e", batch=1, variant="bf16", precision="bf16",
                                                         status="failed", error="boom")]
    df = records_frame(recs).set_index("point_id")
    assert df.loc["a", "speedup_p50"] == pytest.approx(1.0)
    assert df.loc["b", "speedup_p50"] == pytest.approx(2.5)
    assert df.loc["b", "throughput_ratio"] == pytest.approx(2.5)
    assert df.loc["c", "speedup_p50"] == pytest.approx(4.0)
    assert df.loc["c", "throughput_ratio"] == pytest.approx(330 / 80)
    assert df.loc["d", "speedup_p50"] == pytest.approx(1.0)  # its own shape's baseline
    assert math.isnan(df.loc["e", "speedup_p50"])
    assert df.loc["e", "status"] == "failed" and df.loc["e", "error"] == "boom"


def test_no_baseline_means_no_speedup():
    df = records_frame([record("x", variant="bf16", precision="bf16"), record("y", backend="onnxruntime")])
    assert df["speedup_p50"].isna().all()


def test_baseline_is_per_model_and_device():
    df = records_frame([record("a", model="m1", p50=100), record("b", model="m2", p50=10),
                        record("c", model="m2", variant="bf16", precision="bf16", p50=5)]).set_index("point_id")
    assert df.loc["c", "speedup_p50"] == pytest.approx(2.0)


def test_report_files_show_failures(tmp_path):
    recs = [record("a"), record("b", variant="bf16", precision="bf16", status="timeout", error="too slow")]
    md, files = build_report(recs, tmp_path)
    assert "timeout" in md and "too slow" in md
    assert {f.name for f in files} >= {"report.md", "comparison.csv", "report.html"}
    csv = (tmp_path / "comparison.csv").read_text()
    assert csv.count("\n") == 3  # header + 2 rows: the failure is not dropped


def test_records_append_flush_and_survive_torn_line(tmp_path):
    append_record(tmp_path, record("a"))
    append_record(tmp_path, record("b", status="failed", error="x"))
    with open(tmp_path / "runs.jsonl", "a") as fh:
        fh.write('{"schema_version": 1, "point_id": "c", "sta')  # a crash mid-write
    recs = load_records(tmp_path)
    assert [r["point_id"] for r in recs] == ["a", "b"]
    assert completed_points(tmp_path) == {"a"}


def test_latest_record_per_point_replaces_older():
    old, new = record("a", p50=100), record("a", p50=50)
    other = record("b")
    latest = latest_per_point([old, other, new])
    assert [r["point_id"] for r in latest] == ["a", "b"]
    assert latest[0]["metrics"]["latency"]["p50_ms"] == 50


def test_records_are_strict_json(tmp_path):
    append_record(tmp_path, record("a"))
    line = (tmp_path / "runs.jsonl").read_text().strip()
    assert json.loads(line)["schema_version"] == 1


def test_distillation_pairs_student_with_teacher():
    from bench.report.distillation import distillation

    teacher = record("t", model="big", p50=100)
    student = record("s", model="small", p50=25)
    student["config"]["model"]["teacher"] = "big"
    teacher["metrics"]["memory"]["parameter_bytes"] = 400
    student["metrics"]["memory"]["parameter_bytes"] = 100
    for rec, ppl in ((teacher, 20.0), (student, 25.0)):
        rec["metrics"]["quality"] = {"perplexity": ppl, "perplexity_fp32": ppl, "perplexity_ratio": 1.0}
    (row,) = distillation(records_frame([teacher, student])).to_dict("records")
    assert row["speed_ratio"] == pytest.approx(4.0)
    assert row["size_ratio"] == pytest.approx(0.25)
    assert row["quality_ratio"] == pytest.approx(1.25)

    teacher["provenance"]["weights"] = "random"
    (row,) = distillation(records_frame([teacher, student])).to_dict("records")
    assert math.isnan(row["quality_ratio"]) and "random" in row["quality_basis"]


def test_efficiency_and_projection_from_work_and_peaks(tmp_path):
    rec = record("a", p50=100.0, batch=8)
    rec["metrics"]["work"] = {"flops": 10e9, "bytes": 1e9}
    rec["metrics"]["energy"] = {"status": "unavailable", "reason": "no RAPL"}
    peaks = {"test-machine": {"devices": {"cpu": {"gemm": {"fp32": {"value": 200e9}}, "bandwidth": {"value": 20e9}}}}}
    md, files = build_report([rec], tmp_path, peaks=peaks, price_per_hour=3.6)
    import pandas as pd

    eff = pd.read_csv(tmp_path / "efficiency.csv").iloc[0]
    assert eff["achieved_gflops"] == pytest.approx(100.0)  # 10 GFLOP in 100 ms
    assert eff["pct_peak_flops"] == pytest.approx(50.0) and eff["bound"] == "compute"
    assert eff["energy"] == "unavailable"
    assert eff["usd_per_m_inferences"] == pytest.approx(3.6 / 3600 / 80 * 1e6)
    proj = pd.read_csv(tmp_path / "projection.csv")
    assert any(c.endswith("projected x") for c in proj.columns)
    assert "NOT measured" in md
    assert (tmp_path / "roofline-cpu.png").exists()
