"""Flatten records into one pandas row per (machine, point), and attach each point's fp32 reference baseline
measured on the same machine, in the same suite where that suite measured one.

A report over several machines keeps every machine's rows: the same point on two machines is two rows,
and a speedup is never a ratio across machines (that is the hardware section's job). A row's machine is the one
that served the model: for an endpoint measured from another machine, the server's (`client_machine` names the
machine that sent the requests).

Where a point was run in several processes (`bench run --repeat N`), its row stands for all of them: p50 is
the mean of the processes' medians and samples/s the mean of their rates (the centres bench/compare/stats.py
tests), `processes` says how many, and every speedup carries its 95% interval and verdict (`*_ci_low`,
`*_ci_high`, `*_sig`) from that one rule.

Suites measure the same shape with their own settings (quickstart, frontier and pruning all time minilm-l6
fp32 b8 s128): each fp32 point is a baseline, never a variant of another suite's fp32, and a variant is
measured against its own suite's fp32 (another suite's at its shape where its own suite has none).
"""

from __future__ import annotations

import math

import pandas as pd

from ..compare.pairs import group, processes, runs
from ..compare.stats import compare
from ..records.flags import sample_flags
from ..records.schema import AS_SERVED, Record
from ..records.store import latest_per_point
from .serving import is_serving

SHAPE = ["machine", "model", "device", "scenario", "batch", "seq", "target"]


def _flags(rec: Record) -> list[str]:
    flags = []
    lat = rec.metrics.latency
    if lat and lat.unstable:
        flags.append(f"unstable (cv {lat.cv:.0%})")
    if rec.status == "ok":
        flags += sample_flags(rec.metrics)
    if lat and any(w.startswith("outliers") for w in lat.warnings):
        flags.append("outliers")
    compiled = rec.provenance.backend and rec.provenance.backend.compiled
    recompiled = compiled and compiled.recompiled_in_traffic
    if recompiled:
        flags.append(f"recompiled in timed traffic ({recompiled} frames)")
    if rec.provenance.weights == "random":
        flags.append("random weights")
    return flags


def served_on(rec: Record) -> str:
    """The machine a row's figures describe: the one that served the model. A record names the machine that ran
    the point (`machine`); for an endpoint the point did not launch, the server's machine is the one the suite
    declared (`provenance.server_machine`), and the row is that machine's."""
    server = rec.provenance.server_machine
    return server["machine_id"] if server else rec.machine_id


def variant_label(rec: Record) -> str:
    """The variant a row shows: a server's model runs as it was started, whatever the point's (plain fp32) variant
    is called, so such a row says `as served` rather than claim a precision."""
    session = rec.provenance.backend
    return AS_SERVED if session is not None and session.precision == AS_SERVED else rec.config.variant.name


def is_baseline(rec: Record) -> bool:
    """An fp32 point with no transforms on the backend its session description says is the reference
    implementation: what every speedup on its machine is measured against. A serving point is never one: its
    answer is a capacity, not a ratio."""
    v, session = rec.config.variant, rec.provenance.backend
    return (session is not None and session.reference and v.precision == "fp32" and not v.transforms
            and not is_serving(rec))


def records_frame(records: list[Record]) -> pd.DataFrame:
    rows = []
    by_point = group(records, lambda r: r.key)
    for rec in latest_per_point(records):
        cfg, m = rec.config, rec.metrics
        lat, mem, qual = m.latency, m.memory, m.quality
        procs = processes(rec, by_point[rec.key])
        rows.append({
            "point_id": rec.point_id,
            "machine": served_on(rec),
            "client_machine": rec.machine_id,
            "target": cfg.target or "",
            "node": rec.node,
            "suite": cfg.suite,
            "model": cfg.model.name,
            "teacher": cfg.model.teacher,
            "weights": rec.provenance.weights,
            "task": cfg.task,
            "backend": cfg.backend,
            "device": cfg.device,
            "variant": variant_label(rec),
            "scenario": cfg.scenario.label,
            "batch": cfg.batch_size,
            "seq": cfg.seq_len,
            "status": rec.status,
            "p50_ms": _centre(rec, procs, lambda m: m.latency.p50_ms if m.latency else None),
            "p90_ms": lat.p90_ms if lat else None,
            "p99_ms": lat.p99_ms if lat else None,
            "mean_ms": lat.mean_ms if lat else None,
            "cv": lat.cv if lat else None,
            "n": lat.count if lat else None,
            "samples_per_s": _centre(rec, procs, lambda m: m.throughput.samples_per_s if m.throughput else None),
            "tokens_per_s": _centre(rec, procs, lambda m: m.throughput.tokens_per_s if m.throughput else None),
            "peak_rss_mb": mem.peak_rss_bytes / 2**20 if mem and mem.peak_rss_bytes else None,
            "params_mb": mem.parameter_bytes / 2**20 if mem and mem.parameter_bytes else None,
            "size_bytes": (rec.provenance.backend and rec.provenance.backend.file_bytes)
            or (mem.weight_bytes or mem.parameter_bytes if mem else None),
            "cosine_mean": qual.cosine_mean if qual else None,
            "cosine_min": qual.cosine_min if qual else None,
            "perplexity": qual.perplexity if qual else None,
            "ppl_ratio": qual.perplexity_ratio if qual else None,
            "kl_mean": qual.kl_divergence_mean if qual else None,
            "top1_agree": qual.top1_agreement if qual else None,
            "quality_verdict": qual.verdict if qual else None,
            "quality_ok": qual.within_bound if qual else None,
            "quality_meaningful": qual.meaningful if qual else None,
            "quality_error": qual.error if qual else None,
            "is_baseline": is_baseline(rec),
            "flags": "; ".join(_flags(rec)),
            "error": (rec.error or "").strip().split("\n")[0],
            "record": rec,
            "runs": runs(procs),
            "processes": len(procs),
            "process_records": procs,
            "serving": is_serving(rec),
        })
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    return attach_baseline(df)


def _centre(rec: Record, procs: list[Record], get) -> float | None:
    """A figure of the point: the mean over its processes where there are several, else the newest record's."""
    values = [get(p.metrics) for p in procs] if len(procs) > 1 else [get(rec.metrics)]
    return None if any(v is None for v in values) else sum(values) / len(values)


def _put(columns: dict, name: str, value=math.nan, low=math.nan, high=math.nan, sig: str = "") -> None:
    for suffix, item in (("", value), ("_ci_low", low), ("_ci_high", high), ("_sig", sig)):
        columns[name + suffix].append(item)


RATIOS = {"speedup_p50": "median", "throughput_ratio": "rate"}
SIGNIFICANCE = ("Ratios carry their 95% interval; `n.s.` = not significant (p >= 0.05, the interval holds 1, or "
                "less than 2% from 1). `processes` = processes behind the row v behind what it is measured against: "
                "with one on either side the test sees only the noise within a process, while separate processes "
                "of one point differ by several % (`bench run --repeat 3` or more tests between processes). "
                "The rule: bench/compare/stats.py.")


def with_interval(*names: str) -> list[str]:
    """A ratio's columns: the value, its 95% interval and its verdict (folded into one cell for reading)."""
    return [f"{n}{s}" for n in names for s in ("", "_ci_low", "_ci_high", "_sig")]


def _baseline(row, base: pd.DataFrame, by_suite: pd.DataFrame, by_shape: pd.DataFrame) -> pd.Series | None:
    """The baseline a row is measured against: itself where it has the baseline's configuration, else the fp32
    of its own suite at its shape, else the last fp32 of any suite at its shape."""
    if row["status"] != "ok":
        return None
    if row["is_baseline"]:
        return base.loc[row.name]
    shape = tuple(row[k] for k in SHAPE)
    for table, key in ((by_suite, (*shape, row["suite"])), (by_shape, shape)):
        if key in table.index:
            return table.loc[key]
    return None


def attach_baseline(df: pd.DataFrame) -> pd.DataFrame:
    """speedup = baseline p50 / p50 (latency) and throughput / baseline throughput, per shape and machine (and
    suite: see `_baseline`), each with its 95% interval and verdict (`untested` where a side has no samples); a
    baseline row itself is marked `baseline`. A serving point has none: its answer is its capacity
    (analysis/serving.py), never a ratio from a run that may have been overloaded."""
    base = df[df["is_baseline"] & (df["status"] == "ok")]
    by_suite = base.drop_duplicates([*SHAPE, "suite"], keep="last").set_index([*SHAPE, "suite"])
    by_shape = base.drop_duplicates(SHAPE, keep="last").set_index(SHAPE)
    columns: dict[str, list] = {f"{n}{s}": [] for n in RATIOS for s in ("", "_ci_low", "_ci_high", "_sig")}
    size_ratios, baseline_ids, pairs = [], [], []
    for _, row in df.iterrows():
        b = None if row["serving"] else _baseline(row, base, by_suite, by_shape)
        size_ratios.append(row["size_bytes"] / b["size_bytes"] if b is not None and row["size_bytes"]
                           and b["size_bytes"] else math.nan)
        baseline_ids.append(None if b is None else b["point_id"])
        compared = b is not None and b["point_id"] != row["point_id"]
        pairs.append(f"{row['processes']} v {b['processes']}" if compared
                     else str(row["processes"]) if row["status"] == "ok" else "")
        if b is None:
            for name in RATIOS:
                _put(columns, name)
            continue
        if not compared:
            for name in RATIOS:
                _put(columns, name, 1.0, sig="baseline")
            continue
        estimates = {"speedup_p50": b["p50_ms"] / row["p50_ms"] if row["p50_ms"] else math.nan,
                     "throughput_ratio": row["samples_per_s"] / b["samples_per_s"] if b["samples_per_s"] else math.nan}
        for name, statistic in RATIOS.items():
            cmp = compare(b["runs"], row["runs"], statistic)
            if cmp is not None:
                _put(columns, name, *cmp.speedup(), sig=cmp.verdict)
            else:
                _put(columns, name, estimates[name], sig="" if math.isnan(estimates[name]) else "untested")
    df = df.copy()
    for name, values in columns.items():
        df[name] = values
    df["size_ratio"] = size_ratios
    df["baseline_point"] = baseline_ids
    df["processes"] = pairs
    return df
