"""Flatten records into one pandas row per point, and attach each point's fp32 PyTorch baseline."""

from __future__ import annotations

import math

import pandas as pd

from ..config import ScenarioSpec
from ..results import latest_per_point

SHAPE = ["model", "device", "scenario", "batch", "seq"]


def _flags(rec: dict) -> list[str]:
    flags = []
    m = rec.get("metrics") or {}
    lat = m.get("latency") or {}
    if lat.get("unstable"):
        flags.append(f"unstable (cv {lat['cv']:.0%})")
    if rec["status"] == "ok" and not m.get("sufficient", True):
        flags.append("insufficient sample")
    if any(w.startswith("outliers") for w in lat.get("warnings", [])):
        flags.append("outliers")
    if (rec.get("provenance") or {}).get("weights") == "random":
        flags.append("random weights")
    return flags


def _is_baseline(cfg: dict) -> bool:
    v = cfg["variant"]
    return cfg["backend"] == "pytorch" and v["precision"] == "fp32" and not v["transforms"]


def records_frame(records: list[dict]) -> pd.DataFrame:
    rows = []
    for rec in latest_per_point(records):
        cfg = rec["config"]
        m = rec.get("metrics") or {}
        lat = m.get("latency") or {}
        thr = m.get("throughput") or {}
        mem = m.get("memory") or {}
        qual = m.get("quality") or {}
        backend_info = (rec.get("provenance") or {}).get("backend") or {}
        rows.append({
            "point_id": rec["point_id"],
            "model": cfg["model"]["name"],
            "teacher": cfg["model"].get("teacher"),
            "weights": (rec.get("provenance") or {}).get("weights", cfg.get("weights")),
            "task": cfg.get("task"),
            "backend": cfg["backend"],
            "device": cfg["device"],
            "variant": cfg["variant"]["name"],
            "scenario": ScenarioSpec.model_validate(cfg["scenario"]).label,
            "batch": cfg["batch_size"],
            "seq": cfg["seq_len"],
            "status": rec["status"],
            "p50_ms": lat.get("p50_ms"),
            "p90_ms": lat.get("p90_ms"),
            "p99_ms": lat.get("p99_ms"),
            "mean_ms": lat.get("mean_ms"),
            "cv": lat.get("cv"),
            "n": lat.get("count"),
            "samples_per_s": thr.get("samples_per_s"),
            "tokens_per_s": thr.get("tokens_per_s"),
            "peak_rss_mb": mem["peak_rss_bytes"] / 2**20 if mem.get("peak_rss_bytes") else None,
            "params_mb": mem["parameter_bytes"] / 2**20 if mem.get("parameter_bytes") else None,
            "size_bytes": backend_info.get("model_file_bytes") or mem.get("weight_bytes") or mem.get("parameter_bytes"),
            "cosine_mean": qual.get("cosine_mean"),
            "cosine_min": qual.get("cosine_min"),
            "perplexity": qual.get("perplexity"),
            "ppl_ratio": qual.get("perplexity_ratio"),
            "kl_mean": qual.get("kl_divergence_mean"),
            "top1_agree": qual.get("top1_agreement"),
            "quality_ok": qual.get("within_bound"),
            "quality_meaningful": qual.get("meaningful"),
            "quality_error": qual.get("error"),
            "is_baseline": _is_baseline(cfg),
            "flags": "; ".join(_flags(rec)),
            "error": (rec.get("error") or "").strip().split("\n")[0],
            "machine": (rec.get("machine") or {}).get("machine_id"),
            "record": rec,
        })
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    return attach_baseline(df)


def attach_baseline(df: pd.DataFrame) -> pd.DataFrame:
    """speedup = baseline p50 / p50 (latency) and throughput / baseline throughput, per shape."""
    base = df[df["is_baseline"] & (df["status"] == "ok")]
    base = base.drop_duplicates(SHAPE, keep="last").set_index(SHAPE)
    speedups, tput_ratios, size_ratios = [], [], []
    for _, row in df.iterrows():
        key = tuple(row[k] for k in SHAPE)
        if row["status"] != "ok" or key not in base.index:
            speedups.append(math.nan)
            tput_ratios.append(math.nan)
            size_ratios.append(math.nan)
            continue
        b = base.loc[key]
        size_ratios.append(row["size_bytes"] / b["size_bytes"] if row["size_bytes"] and b["size_bytes"] else math.nan)
        speedups.append(b["p50_ms"] / row["p50_ms"] if row["p50_ms"] else math.nan)
        tput_ratios.append(row["samples_per_s"] / b["samples_per_s"] if b["samples_per_s"] else math.nan)
    df = df.copy()
    df["speedup_p50"] = speedups
    df["throughput_ratio"] = tput_ratios
    df["size_ratio"] = size_ratios
    return df
