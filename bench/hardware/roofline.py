"""Roofline arithmetic: attainable performance, the predicted bound, efficiency, and projections.

Pure arithmetic in SI units (FLOP/s, bytes/s, FLOP/byte, seconds). A projection onto another chip is an
ideal roofline bound from its vendor figures, never a measurement: `projection` labels it `projected`.
"""

from __future__ import annotations

from typing import Mapping


def attainable(intensity: float, peak_flops: float, peak_bw: float) -> float:
    """Roofline ceiling at an arithmetic intensity: min(peak FLOP/s, intensity x bandwidth)."""
    return min(peak_flops, intensity * peak_bw)


def ridge_point(peak_flops: float, peak_bw: float) -> float:
    """Intensity (FLOP/byte) where the memory roof meets the compute roof."""
    return peak_flops / peak_bw


def bound(intensity: float, peak_flops: float, peak_bw: float) -> str:
    """'compute' at or right of the ridge point, 'memory' left of it."""
    return "compute" if intensity * peak_bw >= peak_flops else "memory"


def efficiency_rates(achieved_flops: float, achieved_bw: float, peak_flops: float, peak_bw: float) -> dict:
    """Percent of the compute peak, of the bandwidth peak, and of the roofline at the achieved intensity."""
    intensity = achieved_flops / achieved_bw if achieved_bw else float("inf")
    roof = attainable(intensity, peak_flops, peak_bw)
    return {"achieved_flops": achieved_flops, "achieved_bytes_per_s": achieved_bw, "intensity": intensity,
            "pct_of_peak_flops": 100 * achieved_flops / peak_flops, "pct_of_peak_bw": 100 * achieved_bw / peak_bw,
            "pct_of_roofline": 100 * achieved_flops / roof, "bound": bound(intensity, peak_flops, peak_bw)}


def efficiency(flops: float, nbytes: float, seconds: float, peak_flops: float, peak_bw: float) -> dict:
    """`efficiency_rates` from the work of one timed unit (FLOPs, bytes) and its duration."""
    return efficiency_rates(flops / seconds, nbytes / seconds, peak_flops, peak_bw)


def project(flops: float, nbytes: float, chip_peak_flops: float | None, chip_bw: float | None) -> float | None:
    """Roofline-projected seconds on another chip: max(FLOPs / peak, bytes / bandwidth). An ideal lower
    bound on time (no kernel inefficiency, launch overhead or host work), never a measurement; None when
    the chip lacks either figure. Callers must label it `projected` (see `projection`)."""
    if not chip_peak_flops or not chip_bw:
        return None
    return max(flops / chip_peak_flops, nbytes / chip_bw)


def projection(flops: float, nbytes: float, chip_peak_flops: float | None, chip_bw: float | None,
               items: float = 1.0, chip: str | None = None) -> dict:
    """`project` as a labelled record: seconds and items/s, `kind: projected`, and which roof binds."""
    seconds = project(flops, nbytes, chip_peak_flops, chip_bw)
    out = {"kind": "projected", "chip": chip, "method": "roofline: max(FLOPs / peak, bytes / bandwidth)",
           "seconds": seconds, "items_per_s": items / seconds if seconds else None, "bound": None}
    if seconds is not None:
        out["bound"] = "compute" if flops / chip_peak_flops >= nbytes / chip_bw else "memory"
    return out


def plot_roofline(points: list[dict], peak_flops: float | Mapping[str, float], peak_bw: float, path,
                  title: str = "Roofline") -> None:
    """Log-log roofline PNG or SVG (by `path`'s suffix) with labelled points.

    points: dicts with label, intensity (FLOP/byte) and achieved_flops (FLOP/s).
    peak_flops: one compute ceiling, or {label: FLOP/s} for several (e.g. fp32, bf16, int8).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ceilings = dict(peak_flops) if isinstance(peak_flops, Mapping) else {"peak": float(peak_flops)}
    ridges = [v / peak_bw for v in ceilings.values()]
    xs = [p["intensity"] for p in points if p.get("intensity", 0) > 0] or [1.0]
    lo, hi = min(xs + ridges) / 10, max(xs + ridges) * 10
    grid = np.logspace(np.log10(lo), np.log10(hi), 300)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    under = grid <= max(ridges)
    ax.loglog(grid[under], grid[under] * peak_bw / 1e9, "k:", lw=1, label=f"memory roof: {peak_bw / 1e9:.1f} GB/s")
    for i, (name, value) in enumerate(sorted(ceilings.items(), key=lambda kv: kv[1])):
        unit = "Gop/s" if "int" in name.lower() else "GFLOP/s"
        ax.loglog(grid, np.minimum(value, grid * peak_bw) / 1e9, "-", lw=2, color=f"C{i}",
                  label=f"{name}: {value / 1e9:,.0f} {unit} (ridge {value / peak_bw:.1f} FLOP/B)")
    for p in points:
        if p.get("intensity", 0) <= 0 or p.get("achieved_flops", 0) <= 0:
            continue
        ax.loglog(p["intensity"], p["achieved_flops"] / 1e9, "o", color="k", ms=4)
        ax.annotate(p.get("label", ""), (p["intensity"], p["achieved_flops"] / 1e9), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("GFLOP/s")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
