"""Hardware efficiency: roofline position of every measured point against this machine's measured
ceilings, energy, cost, and roofline projections onto the chip catalog (labelled `projected`)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..analysis.efficiency import ceilings, efficiency_rows
from ..hardware.catalog import load_catalog
from ..hardware.roofline import plot_roofline, project
from . import drop_single_machine, section


def _plot(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    rows = efficiency_rows(df)
    written = []
    several = len(df.attrs.get("peaks", {})) > 1
    for machine, peaks in df.attrs.get("peaks", {}).items():
        for device in sorted({r["device"] for r in rows if r["machine"] == machine}):
            peak_flops, peak_bw = ceilings(peaks, device, "fp32")
            points = [{"label": f"{r['model']} {r['variant']} b{r['batch']} {r['phase']}", "intensity": r["intensity"],
                       "achieved_flops": r["achieved_gflops"] * 1e9}
                      for r in rows if r["device"] == device and r["machine"] == machine]
            if not (peak_flops and peak_bw and points):
                continue
            path = out_dir / (f"roofline-{device}-{machine[:24]}.png" if several else f"roofline-{device}.png")
            plot_roofline(points, peak_flops, peak_bw, path, f"Roofline ({machine}, {device}, fp32 ceiling)")
            written.append(path)
    return written


@section("efficiency", "Efficiency against this machine's measured ceilings (roofline)", order=50, plot=_plot,
         note="FLOPs and bytes are counted analytically from the model config (2 FLOPs per multiply-add, full "
              "attention matrix; a generation's prefill runs the LM head on the last position only; bytes are a "
              "lower bound: weights once, less embedding tables a query only gathers rows from (a table tied to the "
              "LM head is read whole and stays in), activations once per layer, KV cache once per decode step). "
              "Ceilings are this machine's measured GEMM peak for the point's compute precision and its measured "
              "copy bandwidth (`bench peak`). Energy is `unavailable` unless a counter could be read.")
def efficiency_table(df: pd.DataFrame) -> pd.DataFrame | None:
    rows = efficiency_rows(df)
    if not rows:
        return None
    out = pd.DataFrame(rows).drop(columns=["_flops", "_bytes", "_seconds"])
    return drop_single_machine(out.dropna(axis=1, how="all"))


@section("projection", "Projected throughput on catalog chips (roofline bound, NOT measured)", order=60,
         note="projected = batch / max(FLOPs / chip peak at the point's precision, bytes / chip bandwidth), from the "
              "vendor figures in bench/hardware/chips (each with its source). It is an ideal upper bound that ignores "
              "kernel efficiency, launch overheads and software; the ratio column divides it by this machine's "
              "measured rate. Empty: the vendor publishes no figure for that precision.")
def projection_table(df: pd.DataFrame) -> pd.DataFrame | None:
    rows = efficiency_rows(df)
    if not rows:
        return None
    chips = load_catalog()
    out = []
    for r in rows:
        item = {k: r[k] for k in ("machine", "model", "variant", "device", "batch", "seq", "phase", "precision")}
        item["measured_items_per_s"] = r["items_per_s"]
        for chip in chips:
            seconds = project(r["_flops"], r["_bytes"], chip.peak_flops(r["precision"]), chip.bandwidth())
            item[f"{chip.name.split(' (')[0]} projected x"] = (r["_seconds"] / seconds) if seconds else math.nan
        out.append(item)
    return drop_single_machine(pd.DataFrame(out))
