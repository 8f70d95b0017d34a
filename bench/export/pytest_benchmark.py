"""pytest-benchmark's JSON (what `pytest --benchmark-json` and `--benchmark-save` write), so that `pytest-benchmark
compare`, its histograms and github-action-benchmark (`tool: 'pytest'`) read bench's records.

Checked against pytest-benchmark 5.3.1: plugin.py `pytest_benchmark_generate_json` (machine_info, commit_info,
benchmarks, datetime, version), stats.py `Metadata.as_dict` (group, name, fullname, params, param, extra_info,
options, and stats with data and iterations) and `Stats` (the statistics below, field for field),
storage/file.py `FileStorage.load` (reads every benchmark's stats) and table.py (compare shows min, max, mean,
stddev, median, iqr, ops, rounds, iterations, outliers). github-action-benchmark reads fullname, stats.ops,
stats.stddev, stats.mean and stats.rounds.

One benchmark per point that ran: its per-query latencies in seconds as stats.data (every process of the
point, oldest first), one query per round (iterations 1), so ops = queries per second. fullname = the point
id, stable across runs, which compare and the action match on; name = the point's label; group = the model
and shape, so the variants of one shape stand side by side. What pytest-benchmark has no field for
(throughput, the speedup over fp32 with its interval, quality, memory, efficiency, provenance) is in
extra_info.
"""

from __future__ import annotations

import json
import math
import statistics
from bisect import bisect_left, bisect_right

import pandas as pd

from ..analysis.efficiency import efficiency_rows
from ..compare.pairs import group, processes
from . import ExportFormat, formats

FORMAT_VERSION = "5.3.1"  # the pytest-benchmark whose storage and compare code this format was checked against
EFFICIENCY = ("phase", "precision", "gflop", "mbytes", "intensity", "achieved_gflops", "achieved_gbps",
              "pct_peak_flops", "pct_peak_bw", "pct_roofline", "bound", "energy", "j_per_inference")


def _quartiles(ordered: list[float]) -> tuple[float, float]:
    """Q1 and Q3 as pytest-benchmark computes them (methods 3 and 2 of the Wikipedia article it cites)."""
    n = len(ordered)
    if n == 1:
        return ordered[0], ordered[0]
    if n % 2 == 0:
        return statistics.median(ordered[: n // 2]), statistics.median(ordered[n // 2:])
    k = n // 4
    if n % 4 == 1:
        return 0.25 * ordered[k - 1] + 0.75 * ordered[k], 0.75 * ordered[3 * k] + 0.25 * ordered[3 * k + 1]
    return 0.75 * ordered[k] + 0.25 * ordered[k + 1], 0.25 * ordered[3 * k + 1] + 0.75 * ordered[3 * k + 2]


def stats(data: list[float]) -> dict:
    """pytest-benchmark's `stats` entry for durations `data` (seconds, one per round)."""
    ordered = sorted(data)
    q1, q3 = _quartiles(ordered)
    iqr = q3 - q1
    mean = statistics.mean(data)
    stddev = statistics.stdev(data) if len(data) > 1 else 0
    total = sum(data)
    iqr_outliers = sum(1 for v in data if v < q1 - 1.5 * iqr or v > q3 + 1.5 * iqr)
    stddev_outliers = sum(1 for v in data if v < mean - stddev or v > mean + stddev)
    return {"min": ordered[0], "max": ordered[-1], "mean": mean, "stddev": stddev, "rounds": len(data),
            "median": statistics.median(data), "iqr": iqr, "q1": q1, "q3": q3, "iqr_outliers": iqr_outliers,
            "stddev_outliers": stddev_outliers, "outliers": f"{stddev_outliers};{iqr_outliers}",
            "ld15iqr": ordered[0] if len(data) == 1 else ordered[bisect_left(ordered, q1 - 1.5 * iqr)],
            "hd15iqr": ordered[bisect_right(ordered, q3 + 1.5 * iqr) - 1],
            "ops": len(data) / total if total else 0, "total": total, "data": list(data), "iterations": 1}


def _json_safe(value):
    """NaN and infinities as null: JSON has no such numbers (JSON.parse in the action refuses them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value.item() if hasattr(value, "item") else value


def machine_info(machine) -> dict:
    """The record's machine description, with the keys pytest-benchmark's own machine_info uses."""
    desc = machine.model_dump()
    cpu = desc.get("cpu") or {}
    system, _, release = (desc.get("os") or "").partition(" ")
    return {**desc, "node": machine.machine_id, "processor": cpu.get("model"), "system": system, "release": release,
            "python_version": desc.get("python"),
            "cpu": {**cpu, "brand_raw": cpu.get("model"), "count": cpu.get("logical_cores")}}


def commit_info(harness) -> dict:
    """pytest-benchmark's commit_info, for the harness that made the records: its commit and dirty flag."""
    return {"id": harness.commit or "unversioned", "dirty": bool(harness.dirty), "project": "bench",
            "branch": None, "time": None, "author_time": None, "version": harness.version,
            "source_digest": harness.source_digest}


def _efficiency(df: pd.DataFrame, index) -> list[dict]:
    """The efficiency figures the report shows for one row (bench/analysis/efficiency.py), per timed phase."""
    one = df.loc[[index]]
    one.attrs = df.attrs
    return [{k: row[k] for k in EFFICIENCY if k in row} for row in efficiency_rows(one)]


def _extra_info(df: pd.DataFrame, index, procs: list) -> dict:
    row, rec = df.loc[index], df.loc[index, "record"]
    cfg, m = rec.config, rec.metrics
    return {
        "point_id": rec.point_id, "machine_id": rec.machine_id, "harness": rec.harness.label,
        "weights": rec.provenance.weights, "model": cfg.model.name, "backend": cfg.backend, "device": cfg.device,
        "variant": cfg.variant.name, "precision": cfg.variant.precision,
        "transforms": [t.get("description", t["name"]) for t in rec.provenance.transforms],
        "scenario": cfg.scenario.label, "batch_size": cfg.batch_size, "seq_len": cfg.seq_len,
        "processes": len(procs), "sufficient": m.sufficient, "flags": row["flags"],
        "p50_ms": row["p50_ms"], "p99_ms": row["p99_ms"],
        "median_ci95_ms": m.latency.median_ci95_ms if m.latency else None,
        "samples_per_s": row["samples_per_s"], "tokens_per_s": row["tokens_per_s"],
        "speedup_p50": row["speedup_p50"], "speedup_p50_ci95": [row["speedup_p50_ci_low"], row["speedup_p50_ci_high"]],
        "speedup_p50_verdict": row["speedup_p50_sig"], "baseline_point": row["baseline_point"],
        "size_bytes": row["size_bytes"], "size_ratio": row["size_ratio"],
        "quality": m.quality.model_dump(exclude_none=True, exclude={"inputs"}) if m.quality else None,
        "memory": m.memory.model_dump(exclude_none=True) if m.memory else None,
        "efficiency": _efficiency(df, index),
    }


def benchmark(df: pd.DataFrame, index, procs: list) -> dict:
    """One point as pytest-benchmark's `Metadata.as_dict()` writes a benchmark."""
    rec = df.loc[index, "record"]
    cfg, s = rec.config, rec.config.settings
    data = [ms / 1e3 for p in sorted(procs, key=lambda p: p.started_at) for ms in p.metrics.samples_ms]
    params = {"model": cfg.model.name, "backend": cfg.backend, "device": cfg.device, "variant": cfg.variant.name,
              "scenario": cfg.scenario.label, "batch_size": cfg.batch_size, "seq_len": cfg.seq_len}
    return {"group": f"{cfg.model.name} {cfg.device} {cfg.scenario.label} b{cfg.batch_size} s{cfg.seq_len}",
            "name": cfg.label, "fullname": rec.point_id, "params": params,
            "param": f"{cfg.backend}-{cfg.variant.name}-b{cfg.batch_size}-s{cfg.seq_len}",
            "extra_info": _extra_info(df, index, procs),
            "options": {"timer": "perf_counter", "min_rounds": s.min_iterations, "max_time": s.max_duration_s,
                        "warmup": s.warmup_iterations},
            "stats": stats(data)}


@formats.register("pytest-benchmark")
class PytestBenchmark(ExportFormat):
    help = "pytest-benchmark JSON: `pytest-benchmark compare FILE`, github-action-benchmark (tool: 'pytest')"

    def export(self, df: pd.DataFrame, records: list, machine: str) -> tuple[str, str]:
        rows = df[df["machine"] == machine]
        by_point = group(records, lambda r: r.key)
        benches = []
        for index, rec in rows["record"].items():
            procs = [p for p in processes(rec, by_point[rec.key]) if p.metrics.samples_ms]
            if procs:
                benches.append(benchmark(df, index, procs))
        latest = max(rows["record"], key=lambda r: r.started_at)
        document = {"machine_info": machine_info(latest.machine), "commit_info": commit_info(latest.harness),
                    "benchmarks": benches, "datetime": latest.started_at.isoformat(), "version": FORMAT_VERSION}
        left_out = len(rows) - len(benches)
        said = f"{len(benches)} benchmark(s)" + (f"; {left_out} point(s) left out: not ok, or no per-query "
                                                  f"latencies" if left_out else "")
        return json.dumps(_json_safe(document), indent=2, allow_nan=False), said
