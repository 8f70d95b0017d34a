"""Flatten records into one pandas row per (machine, point), and attach each point's fp32 PyTorch baseline
measured on the same machine.

A report over several machines keeps every machine's rows: the same point on two machines is two rows,
and a speedup is never a ratio across machines (that is the hardware section's job).
"""

from __future__ import annotations

import math

import pandas as pd

from ..records.schema import Record
from ..records.store import latest_per_point

SHAPE = ["machine", "model", "device", "scenario", "batch", "seq", "target"]


def _flags(rec: Record) -> list[str]:
    flags = []
    lat = rec.metrics.latency
    if lat and lat.unstable:
        flags.append(f"unstable (cv {lat.cv:.0%})")
    if rec.status == "ok" and not rec.metrics.sufficient:
        flags.append("insufficient sample")
    if lat and any(w.startswith("outliers") for w in lat.warnings):
        flags.append("outliers")
    if rec.provenance.weights == "random":
        flags.append("random weights")
    return flags


def is_baseline(rec: Record) -> bool:
    """The fp32 PyTorch point with no transforms: what every speedup on its machine is measured against."""
    v = rec.config.variant
    return rec.config.backend == "pytorch" and v.precision == "fp32" and not v.transforms


def records_frame(records: list[Record]) -> pd.DataFrame:
    rows = []
    for rec in latest_per_point(records):
        cfg, m = rec.config, rec.metrics
        lat, thr, mem, qual = m.latency, m.throughput, m.memory, m.quality
        rows.append({
            "point_id": rec.point_id,
            "machine": rec.machine_id,
            "target": cfg.target or "",
            "node": rec.node,
            "model": cfg.model.name,
            "teacher": cfg.model.teacher,
            "weights": rec.provenance.weights,
            "task": cfg.task,
            "backend": cfg.backend,
            "device": cfg.device,
            "variant": cfg.variant.name,
            "scenario": cfg.scenario.label,
            "batch": cfg.batch_size,
            "seq": cfg.seq_len,
            "status": rec.status,
            "p50_ms": lat.p50_ms if lat else None,
            "p90_ms": lat.p90_ms if lat else None,
            "p99_ms": lat.p99_ms if lat else None,
            "mean_ms": lat.mean_ms if lat else None,
            "cv": lat.cv if lat else None,
            "n": lat.count if lat else None,
            "samples_per_s": thr.samples_per_s if thr else None,
            "tokens_per_s": thr.tokens_per_s if thr else None,
            "peak_rss_mb": mem.peak_rss_bytes / 2**20 if mem and mem.peak_rss_bytes else None,
            "params_mb": mem.parameter_bytes / 2**20 if mem and mem.parameter_bytes else None,
            "size_bytes": rec.provenance.backend.get("model_file_bytes")
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
        })
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    return attach_baseline(df)


def attach_baseline(df: pd.DataFrame) -> pd.DataFrame:
    """speedup = baseline p50 / p50 (latency) and throughput / baseline throughput, per shape and machine."""
    base = df[df["is_baseline"] & (df["status"] == "ok")]
    base = base.drop_duplicates(SHAPE, keep="last").set_index(SHAPE)
    speedups, tput_ratios, size_ratios, baseline_ids = [], [], [], []
    for _, row in df.iterrows():
        key = tuple(row[k] for k in SHAPE)
        if row["status"] != "ok" or key not in base.index:
            speedups.append(math.nan)
            tput_ratios.append(math.nan)
            size_ratios.append(math.nan)
            baseline_ids.append(None)
            continue
        b = base.loc[key]
        size_ratios.append(row["size_bytes"] / b["size_bytes"] if row["size_bytes"] and b["size_bytes"] else math.nan)
        speedups.append(b["p50_ms"] / row["p50_ms"] if row["p50_ms"] else math.nan)
        tput_ratios.append(row["samples_per_s"] / b["samples_per_s"] if b["samples_per_s"] else math.nan)
        baseline_ids.append(b["point_id"])
    df = df.copy()
    df["speedup_p50"] = speedups
    df["throughput_ratio"] = tput_ratios
    df["size_ratio"] = size_ratios
    df["baseline_point"] = baseline_ids
    return df
