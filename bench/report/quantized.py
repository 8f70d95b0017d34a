"""The "quantized vs full" table: speed, size and quality of every variant against fp32 PyTorch."""

from __future__ import annotations

import pandas as pd

from ..analysis.frame import SIGNIFICANCE, with_interval
from . import drop_single_machine, section


def _verdict(row) -> str:
    """The quality verdict of the record, sharpened where a variant is faster but breaks the bound."""
    if row["status"] != "ok":
        return row["status"]
    verdict = row["quality_verdict"]
    if not isinstance(verdict, str):
        return ""
    if verdict == "error":
        return "quality failed"
    if verdict == "breaks bound":
        faster = row["speedup_p50_sig"] == "faster"  # a claim only where the difference is significant
        return "FASTER BUT BREAKS QUALITY BOUND" if faster else "breaks quality bound"
    return verdict


@section("quantized", "Quantized vs full: speed, size and quality against fp32 PyTorch", order=20,
         note="Quality is measured against the fp32 PyTorch outputs of the same weights on the same text, outside "
              "the timed window. Bounds: encoders cosine_mean >= cosine_min, decoders perplexity ratio <= "
              "ppl_ratio_max (suite `quality`). Size is the exported file on disk (ONNX) or the weights in memory "
              "(PyTorch), exact rather than sampled. Random-weight rows: quality describes numerical drift only. "
              + SIGNIFICANCE)
def quantized(df: pd.DataFrame) -> pd.DataFrame | None:
    if "cosine_mean" not in df or df[["cosine_mean", "ppl_ratio", "quality_error"]].isna().all().all():
        return None
    out = df[~df["serving"]].copy()  # a serving point's answer is its capacity (report/serving.py)
    if out.empty:
        return None
    out["verdict"] = [_verdict(r) for _, r in out.iterrows()]
    out["weights"] = [w if m is not False else f"{w} (quality not meaningful)"
                      for w, m in zip(out["weights"], out["quality_meaningful"])]
    cols = ["machine", "model", "weights", "device", "scenario", "batch", "seq", "backend", "variant", "status", "p50_ms",
            "samples_per_s", *with_interval("speedup_p50"), "processes", "size_ratio", "cosine_mean", "cosine_min",
            "perplexity", "ppl_ratio", "kl_mean", "top1_agree", "verdict"]
    out = drop_single_machine(out[cols])
    out = out.drop(columns=[c for c in ("cosine_mean", "cosine_min", "perplexity", "ppl_ratio", "kl_mean", "top1_agree")
                            if out[c].isna().all()])
    return out.sort_values([c for c in ("machine", "model", "device", "scenario", "batch", "seq") if c in out],
                           kind="stable")
