"""The main comparison table: one row per point, failures shown, speedup against fp32 PyTorch."""

from __future__ import annotations

import pandas as pd

from ..analysis.frame import SIGNIFICANCE, with_interval
from . import drop_single_machine, section


@section("comparison", "Comparison (speedup against the fp32 PyTorch point of the same shape)", order=10,
         note="speedup = baseline p50 / p50, the baseline being the fp32 point of the same suite where that suite "
              "measured one; throughput ratio = samples/s / baseline samples/s. "
              "Rows flagged `random weights` are valid for speed only. " + SIGNIFICANCE)
def comparison(df: pd.DataFrame) -> pd.DataFrame:
    cols = ["machine", "target", "suite", "model", "weights", "backend", "device", "variant", "scenario", "batch",
            "seq", "status", "p50_ms", "p90_ms", "p99_ms", "cv", "n", "samples_per_s", "tokens_per_s",
            *with_interval("speedup_p50", "throughput_ratio"), "processes", "peak_rss_mb", "flags", "error"]
    out = df[cols].copy()
    # Columns with nothing in them (no failures, no flags) only widen a pasted table.
    out = out.drop(columns=[c for c in ("flags", "error", "target") if not out[c].astype(bool).any()])
    out = drop_single_machine(out)
    if out["suite"].nunique() <= 1:  # which fp32 is which where suites measured the same shape
        out = out.drop(columns="suite")
    return out.sort_values([c for c in ("machine", "model", "device", "scenario", "batch", "seq") if c in out],
                           kind="stable")
