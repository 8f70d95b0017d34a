"""Records on disk, the report's baseline and speedup arithmetic, and failed points kept visible."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from builders import record

from bench.errors import ConfigError
from bench.records.schema import SCHEMA_VERSION
from bench.records.store import append_record, latest_per_point, load_records, resume_state
from bench.analysis.frame import records_frame
from bench.report.writer import build_report


def test_baseline_and_speedups():
    recs = [record("a", p50=100, tput=80), record("b", variant="bf16", precision="bf16", p50=40, tput=200),
            record("c", variant="int8", transforms=[{"name": "int8-dynamic"}], p50=25, tput=330),
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
        fh.write('{"schema_version": 2, "point_id": "c", "sta')  # a crash mid-write
    recs = load_records(tmp_path)
    assert [r.point_id for r in recs] == ["a", "b"]
    from builders import HARNESS

    assert resume_state(tmp_path, HARNESS) == ({"a"}, set())


def test_latest_record_per_point_replaces_older():
    old, new = record("a", p50=100), record("a", p50=50)
    other = record("b")
    latest = latest_per_point([old, other, new])
    assert [r.point_id for r in latest] == ["a", "b"]
    assert latest[0].metrics.latency.p50_ms == 50


def test_records_are_strict_json(tmp_path):
    """NaN and infinities are not JSON: a record holding one is refused before it reaches the file."""
    append_record(tmp_path, record("a"))
    line = (tmp_path / "runs.jsonl").read_text().strip()
    assert json.loads(line)["schema_version"] == SCHEMA_VERSION
    with pytest.raises(ValueError, match="finite"):
        record("b", metrics={"throughput": {"samples_per_s": float("nan"), "basis": "test"}})


def test_an_outcome_with_a_nan_becomes_a_failed_record():
    from builders import point

    from bench.records.build import make_record, now

    outcome = {"status": "ok", "metrics": {"throughput": {"samples_per_s": float("inf"), "basis": "x"}},
               "provenance": {"weights": "real"}}
    rec = make_record(point(), outcome, {"machine_id": "m"}, now(), 1.0, "s")
    assert rec.status == "failed" and "samples_per_s" in rec.error


def test_a_report_over_two_machines_keeps_both(tmp_path):
    """Defect: the same points from two machines in sibling folders kept only the second machine's rows."""
    for machine, p50 in (("machine-a", 100.0), ("machine-b", 50.0)):
        for variant, precision, factor in (("fp32", "fp32", 1.0), ("bf16", "bf16", 0.5)):
            append_record(tmp_path / machine / "suite", record(machine=machine, variant=variant, precision=precision,
                                                               p50=p50 * factor))
    records = load_records(tmp_path)
    df = records_frame(records)
    assert sorted(df["machine"]) == ["machine-a", "machine-a", "machine-b", "machine-b"]
    # each machine's bf16 row is measured against that machine's own fp32 row
    assert df[df["variant"] == "bf16"]["speedup_p50"].tolist() == pytest.approx([2.0, 2.0])
    md, _ = build_report(records, tmp_path)
    assert "machine-a" in md and "machine-b" in md


def test_random_weight_quality_never_reads_within_bound(tmp_path):
    from bench.records.schema import Quality

    quality = {"verdict": "not meaningful (random weights)", "meaningful": False, "perplexity": 54299.0,
               "perplexity_ratio": 1.0}
    df = records_frame([record("a", weights="random", task="causal-lm", metrics={"quality": quality})])
    from bench.report.quantized import quantized

    (row,) = quantized(df).to_dict("records")
    assert row["verdict"] == "not meaningful (random weights)"
    assert Quality.model_validate(quality).within_bound is None


def test_unknown_schema_version_is_a_one_line_error(tmp_path):
    line = record("a").model_dump(mode="json")
    line["schema_version"] = 99
    (tmp_path / "runs.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(ConfigError, match="schema_version 99"):
        load_records(tmp_path)


def test_version_1_records_are_migrated(tmp_path):
    """A record written by bench 0.1 (schema 1) reads as the current version: scenario renamed, harness filled,
    random-weight quality no longer within bound, int8 compute precision from the v1 rule."""
    rec = record("a", weights="random").model_dump(mode="json")
    rec.update(schema_version=1)
    rec["config"]["scenario"]["name"] = "latency"
    rec["config"]["variant"]["transforms"] = [{"name": "int8-dynamic", "options": {}}]
    rec["machine"]["project"] = {"commit": "abc123", "dirty": False}
    del rec["harness"]
    rec["metrics"]["quality"] = {"meaningful": False, "within_bound": True, "perplexity": 5.0}
    rec["metrics"]["work"] = {"flops": 1.0, "bytes": 1.0, "intensity": 1.0, "precision": "fp32"}
    (tmp_path / "runs.jsonl").write_text(json.dumps(rec) + "\n")
    (migrated,) = load_records(tmp_path)
    assert migrated.schema_version == SCHEMA_VERSION and migrated.config.scenario.name == "single-stream"
    assert migrated.point_id == migrated.config.point_id
    assert migrated.harness.commit == "abc123"
    assert migrated.metrics.quality.verdict == "not meaningful (random weights)"
    assert migrated.metrics.quality.within_bound is None
    assert migrated.metrics.work.compute_precision == "int8"


def test_version_2_records_are_migrated(tmp_path):
    """A schema-2 record kept the session's free-form info dict (ORT's `model_file_bytes`, torch.compile's
    `compile`) and CUDA-named memory peaks; it reads as the current version with a typed session description, its reference
    flag from v2's fixed rule (the pytorch backend), and the report reads the same size, flag and baseline."""
    def v2(rec, info: dict, **memory) -> dict:
        data = rec.model_dump(mode="json")
        data["schema_version"] = 2
        data["provenance"]["backend"] = info
        data["machine"]["libraries"] = {"onnxruntime": "1.32.0", "torch": "2.13.0"}
        data["metrics"]["memory"] = {**(data["metrics"].get("memory") or {}), **memory}
        return data

    counters = {"graphs": 1, "frames_compiled": 1, "graph_breaks": 0, "graph_break_reasons": []}
    lines = [
        v2(record("eager"), {"precision": "fp32", "precision_mode": "cast", "torch": "2.13.0", "intra_op_threads": 2,
                             "inter_op_threads": 1, "tf32_matmul": False}, cuda_peak_allocated_bytes=5,
           cuda_peak_reserved_bytes=8),
        v2(record("ort", backend="onnxruntime"), {
            "export": {"opset": 18}, "provider": "cpu", "providers": ["CPUExecutionProvider"],
            "graph_optimization_level": "all", "model_file": "/c/model.onnx", "model_file_bytes": 4000,
            "lookup_table_bytes": 1000, "intra_op_threads": 2, "inter_op_threads": 1}),
        v2(record("compiled", backend="torch-compile"), {
            "precision": "fp32", "precision_mode": "cast", "torch": "2.13.0", "intra_op_threads": 2,
            "inter_op_threads": 1, "compile": {
                "backend": "inductor", "mode": "default", "dynamic": False, "fullgraph": False, "freezing": True,
                "torch": "2.13.0", "compile_s": 1.5, "calls_ms": [900.0, 3.0], "at_open": counters,
                "after_traffic": {**counters, "frames_compiled": 4}, "at_end": {**counters, "frames_compiled": 4},
                "recompiled_in_traffic": 3, "note": "compile_s: ..."}}),
        v2(record("failed", status="failed", error="boom"), {}),
    ]
    (tmp_path / "runs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    recs = {r.point_id: r for r in load_records(tmp_path)}
    assert {r.schema_version for r in recs.values()} == {SCHEMA_VERSION}
    eager, ort, compiled = (recs[k].provenance.backend for k in ("eager", "ort", "compiled"))
    assert eager.engine == "torch" and eager.engine_version == "2.13.0" and eager.reference
    assert eager.threads.intra_op == 2 and eager.precision_mode == "cast" and eager.properties == {"tf32_matmul": False}
    assert recs["eager"].metrics.memory.device_peak_allocated_bytes == 5
    assert recs["eager"].metrics.memory.device_peak_reserved_bytes == 8
    assert ort.engine == "onnxruntime" and ort.engine_version == "1.32.0" and not ort.reference
    assert (ort.file, ort.file_bytes, ort.lookup_table_bytes) == ("/c/model.onnx", 4000, 1000)
    assert ort.properties == {"export": {"opset": 18}, "providers": ["CPUExecutionProvider"],
                              "graph_optimization_level": "all"}
    assert not compiled.reference and compiled.compiled.recompiled_in_traffic == 3
    assert compiled.compiled.settings == {"mode": "default", "dynamic": False, "fullgraph": False, "freezing": True}
    assert compiled.compiled.at_open.graphs == 1 and compiled.compiled.at_end.frames_compiled == 4
    assert recs["failed"].provenance.backend is None
    df = records_frame(list(recs.values())).set_index("point_id")
    assert df["is_baseline"].to_dict() == {"eager": True, "ort": False, "compiled": False, "failed": False}
    assert df.loc["ort", "size_bytes"] == 4000
    assert "recompiled in timed traffic (3 frames)" in df.loc["compiled", "flags"]


def test_distillation_pairs_student_with_teacher():
    from bench.report.distillation import distillation

    def pair(teacher_weights: str):
        quality = {"verdict": "within bound", "perplexity_ratio": 1.0}
        teacher = record("t", model="big", p50=100, weights=teacher_weights, metrics={
            "memory": {"parameter_bytes": 400}, "quality": {**quality, "perplexity": 20.0}})
        student = record("s", model="small", teacher="big", p50=25, metrics={
            "memory": {"parameter_bytes": 100}, "quality": {**quality, "perplexity": 25.0}})
        return [teacher, student]

    (row,) = distillation(records_frame(pair("real"))).to_dict("records")
    assert row["speed_ratio"] == pytest.approx(4.0)
    assert row["size_ratio"] == pytest.approx(0.25)
    assert row["quality_ratio"] == pytest.approx(1.25)

    (row,) = distillation(records_frame(pair("random"))).to_dict("records")
    assert math.isnan(row["quality_ratio"]) and "random" in row["quality_basis"]


def test_efficiency_and_projection_from_work_and_peaks(tmp_path, saved_figures):
    rec = record("a", p50=100.0, batch=8, metrics={
        "work": {"flops": 10e9, "bytes": 1e9, "intensity": 10.0, "precision": "fp32", "compute_precision": "fp32"},
        "energy": {"status": "unavailable", "reason": "no RAPL"}})
    peaks = {"test-machine": {"devices": {"cpu": {"gemm": {"fp32": {"value": 200e9}}, "bandwidth": {"value": 20e9}}}}}
    md, files = build_report([rec], tmp_path, peaks=peaks, prices={"test-machine": 3.6})
    import pandas as pd

    eff = pd.read_csv(tmp_path / "efficiency.csv").iloc[0]
    assert eff["achieved_gflops"] == pytest.approx(100.0)  # 10 GFLOP in 100 ms
    assert eff["pct_peak_flops"] == pytest.approx(50.0) and eff["bound"] == "compute"
    assert eff["energy"] == "unavailable"
    assert eff["usd_per_m_inferences"] == pytest.approx(3.6 / 3600 / 80 * 1e6)
    proj = pd.read_csv(tmp_path / "projection.csv")
    assert any(c.endswith("projected x") for c in proj.columns)
    assert "NOT measured" in md
    from conftest import figure_points, figure_texts

    (fig, path), = [(f, p) for f, p in saved_figures if p.name.startswith("roofline")]
    assert path == tmp_path / "roofline-cpu.png"
    np.testing.assert_allclose(figure_points(fig), [(10.0, 100.0)])  # 10 FLOP/byte at 100 GFLOP/s
    assert "m fp32 b8 forward" in figure_texts(fig)


def test_efficiency_judges_a_point_by_its_declared_compute_precision():
    """Defect: ort-int4 (MatMulNBits, accuracy_level 4, int8 compute) was judged against the fp32 ceiling
    because the table guessed the precision from substrings of transform names."""
    from bench.variants import transforms

    int4 = transforms.get("ort-int4")
    assert int4().compute_precision(int4.Options(), "fp32") == "int8"
    assert int4().compute_precision(int4.Options(accuracy_level=1), "fp32") == "fp32"
    from bench.analysis.efficiency import efficiency_rows

    work = {"flops": 10e9, "bytes": 1e9, "intensity": 10.0, "precision": "fp32", "compute_precision": "int8"}
    rec = record("a", backend="onnxruntime", variant="ort-int4", transforms=[{"name": "ort-optimize"},
                                                                              {"name": "ort-int4"}],
                 metrics={"work": work})
    df = records_frame([rec])
    peaks = {"devices": {"cpu": {"gemm": {"fp32": {"value": 100e9}, "int8": {"value": 400e9}},
                                 "bandwidth": {"value": 20e9}}}}
    df.attrs["peaks"] = {"test-machine": peaks}
    (row,) = efficiency_rows(df)
    assert row["precision"] == "int8" and row["pct_peak_flops"] == pytest.approx(25.0)


def test_results_readme_schema_is_generated_from_the_models():
    from bench.records import docs

    assert docs.generated_part() == docs.schema_markdown().strip(), "run: python -m bench.records.docs --write"


def test_pareto_plot_shows_every_variant_and_the_front(tmp_path, saved_figures):
    from conftest import figure_points, figure_texts

    from bench.report.pruning import _pareto, _pruned_models

    prune = [{"name": "prune-structured", "options": {}}]
    recs = [record("a", p50=100.0, metrics={"quality": {"verdict": "within bound", "cosine_mean": 1.0}}),
            record("b", variant="pruned", transforms=prune, p50=60.0,
                   metrics={"quality": {"verdict": "breaks bound", "cosine_mean": 0.9}}),
            record("c", variant="bf16", precision="bf16", p50=50.0,
                   metrics={"quality": {"verdict": "within bound", "cosine_mean": 0.999}})]
    df = records_frame(recs)
    (path,) = _pareto(_pruned_models(df), tmp_path)
    (fig, saved), = saved_figures
    assert saved == path
    points = sorted(figure_points(fig))  # each variant once, plus the front's dashed line (no markers)
    np.testing.assert_allclose(sorted({p for p in points}), [(50.0, 0.999), (60.0, 0.9), (100.0, 1.0)], rtol=1e-3)
    front = next(line for line in fig.axes[0].get_lines() if line.get_linestyle() == "--")
    np.testing.assert_allclose(front.get_xdata(), [50.0, 100.0], rtol=1e-3)  # the pruned point is dominated
    assert "pytorch/pruned b8" in figure_texts(fig)


def test_a_compiled_point_that_recompiled_inside_the_timed_traffic_is_flagged():
    from bench.records.schema import CompileCounters, Compiled

    def compiled(point_id: str, recompiled: int):
        rec = record(point_id, variant="compile", backend="torch-compile")
        counters = CompileCounters(graphs=1, frames_compiled=1, graph_breaks=0)
        info = Compiled(compiler="inductor", compile_s=1.0, at_open=counters, recompiled_in_traffic=recompiled)
        backend = rec.provenance.backend.model_copy(update={"compiled": info})
        return rec.model_copy(update={"provenance": rec.provenance.model_copy(update={"backend": backend})})

    df = records_frame([record("a"), compiled("clean", 0), compiled("dirty", 2)]).set_index("point_id")
    assert "recompiled" not in df.loc["clean", "flags"]
    assert "recompiled in timed traffic (2 frames)" in df.loc["dirty", "flags"]


def test_two_suites_fp32_at_one_shape_are_both_baselines_never_a_variant(tmp_path):
    """Defect: quickstart and frontier both measure the same fp32 shape with their own settings; the report kept
    the last as the baseline and published the other as "fp32: 1.06x faster than fp32", a variant within bound."""
    from bench.config import Defaults
    from bench.report.answer import best_variants, headline

    quick, frontier = dict(suite="quickstart", settings=Defaults()), dict(suite="frontier",
                                                                          settings=Defaults(min_duration_s=10))
    recs = [record(p50=94.0, **quick), record(variant="bf16", precision="bf16", p50=47.0, **quick),
            record(p50=100.0, **frontier), record(variant="int8", transforms=[{"name": "int8-dynamic"}], p50=40.0,
                                                  **frontier)]
    df = records_frame(recs)
    assert df[df["variant"] == "fp32"]["speedup_p50_sig"].tolist() == ["baseline", "baseline"]
    by_variant = df.set_index("variant")
    assert by_variant.loc["bf16", "speedup_p50"] == pytest.approx(2.0)  # against its own suite's fp32 (94 ms)
    assert by_variant.loc["int8", "speedup_p50"] == pytest.approx(2.5)  # against frontier's (100 ms)
    (best,) = best_variants(df).to_dict("records")
    assert best["variant"] == "int8" and best["baseline_p50_ms"] == pytest.approx(100.0)
    assert "faster than fp32" in headline(best) and not headline(best).startswith("fp32")
    md, _ = build_report(recs, tmp_path)
    assert not any(re.search(r"\bfp32\b.*faster than fp32", line) for line in md.splitlines())
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "fp32: 1.06x" not in page
    import pandas as pd

    assert set(pd.read_csv(tmp_path / "comparison.csv")["suite"]) == {"quickstart", "frontier"}  # which fp32 is which


def test_a_variant_of_a_suite_without_fp32_falls_back_to_the_fp32_of_its_shape():
    recs = [record(p50=100.0, suite="quickstart"),
            record(variant="bf16", precision="bf16", p50=50.0, suite="bf16-only")]
    assert records_frame(recs).set_index("variant").loc["bf16", "speedup_p50"] == pytest.approx(2.0)


def test_pruning_pareto_front_is_drawn_per_shape(tmp_path, saved_figures):
    """Defect: one front over every shape, so a b1 fp32 point (10 ms) dominated every b8 point."""
    from bench.report.pruning import _pareto, _pruned_models

    def cosine(value: float) -> dict:
        return {"quality": {"verdict": "within bound", "cosine_mean": value}}

    prune = [{"name": "prune-structured", "options": {}}]
    recs = [record(batch=1, p50=10.0, metrics=cosine(1.0)),
            record(batch=1, variant="pruned", transforms=prune, p50=8.0, metrics=cosine(0.95)),
            record(batch=8, p50=100.0, metrics=cosine(1.0)),
            record(batch=8, variant="pruned", transforms=prune, p50=60.0, metrics=cosine(0.95)),
            record(batch=8, variant="bf16", precision="bf16", p50=70.0, metrics=cosine(0.9))]  # dominated at b8
    _pareto(_pruned_models(records_frame(recs)), tmp_path)
    (fig, _), = saved_figures
    fronts = [line for line in fig.axes[0].get_lines() if line.get_linestyle() == "--"]
    assert sorted(list(zip(line.get_xdata(), line.get_ydata())) for line in fronts) == [
        [(8.0, 0.95), (10.0, 1.0)], [(60.0, 0.95), (100.0, 1.0)]]
    from conftest import figure_texts

    assert "Pareto front (per shape)" in figure_texts(fig)


def test_version_2_work_becomes_the_phases_v2_timed(tmp_path):
    """v2 knew two scenarios' phases by name (single-stream and offline: a forward; generate: a decode step at its
    TPOT); v3 records the phases a scenario declares and the seconds it measured for each."""
    def v2(rec, work: dict) -> dict:
        data = rec.model_dump(mode="json")
        data["schema_version"] = 2
        data["provenance"]["backend"] = {"torch": "2.13.0"}
        data["metrics"]["work"] = {"flops": 2e9, "bytes": 1e8, "intensity": 20.0, "precision": "fp32",
                                   "compute_precision": "fp32", **work}
        return data

    step = {"flops": 1e7, "bytes": 5e7, "intensity": 0.2, "context": 144}
    timing = {"count": 8, "p50_ms": 20.0}
    generation = {"ttft": {"count": 8, "p50_ms": 90.0}, "e2e": timing, "tpot": timing, "new_tokens": 32,
                  "prompt_tokens": 128, "throughput": {"samples_per_s": 1.0, "basis": "v2"}}
    single = v2(record("single", p50=50.0), {})
    generate = v2(record("gen", task="causal-lm", scenario="generate", batch=1), {"decode_step": step})
    generate["metrics"]["generation"] = generation
    (tmp_path / "runs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in (single, generate)))
    recs = {r.point_id: r for r in load_records(tmp_path)}
    (forward,) = recs["single"].metrics.work.phases
    assert (forward.name, forward.flops, forward.items, forward.tokens) == ("forward", 2e9, 8, 8 * 128)
    assert recs["single"].metrics.phase_seconds["forward"] == pytest.approx(recs["single"].metrics.latency.p50_ms / 1e3)
    (decode,) = recs["gen"].metrics.work.phases  # no prefill: v2 charged it the LM head over every prompt token
    assert (decode.name, decode.flops, decode.context, decode.tokens) == ("decode", 1e7, 144, 1)
    assert recs["gen"].metrics.phase_seconds == {"decode": 0.02}
