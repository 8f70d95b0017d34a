"""Roofline arithmetic: attainable performance, the predicted bound, efficiency, and projections."""

from __future__ import annotations


def attainable(intensity: float, peak_flops: float, peak_bw: float) -> float:
    return min(peak_flops, intensity * peak_bw)


def bound(intensity: float, peak_flops: float, peak_bw: float) -> str:
    return "compute" if intensity * peak_bw >= peak_flops else "memory"


def efficiency(flops: float, nbytes: float, seconds: float, peak_flops: float, peak_bw: float) -> dict:
    achieved_flops, achieved_bw = flops / seconds, nbytes / seconds
    intensity = flops / nbytes
    roof = attainable(intensity, peak_flops, peak_bw)
    return {"achieved_flops": achieved_flops, "achieved_bytes_per_s": achieved_bw, "intensity": intensity,
            "pct_of_peak_flops": 100 * achieved_flops / peak_flops, "pct_of_peak_bw": 100 * achieved_bw / peak_bw,
            "pct_of_roofline": 100 * achieved_flops / roof, "bound": bound(intensity, peak_flops, peak_bw)}


def project(flops: float, nbytes: float, chip_peak_flops: float | None, chip_bw: float | None) -> float | None:
    """Roofline-projected seconds on another chip: an ideal bound, labelled `projected`, never measured."""
    times = [t for t in (flops / chip_peak_flops if chip_peak_flops else None,
                         nbytes / chip_bw if chip_bw else None) if t is not None]
    return max(times) if len(times) == 2 else None


def plot_roofline(points: list[dict], peak_flops: float, peak_bw: float, path, title: str = "Roofline") -> None:
    """Log-log roofline with this machine's ceilings and the achieved points (label, intensity, flops)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    xs = [p["intensity"] for p in points] or [1.0]
    lo, hi = min(xs + [peak_flops / peak_bw]) / 10, max(xs + [peak_flops / peak_bw]) * 10
    grid = np.logspace(np.log10(lo), np.log10(hi), 200)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    ax.loglog(grid, np.minimum(peak_flops, grid * peak_bw) / 1e9, "k-", lw=2,
              label=f"ceiling: {peak_flops / 1e9:.0f} GFLOP/s, {peak_bw / 1e9:.1f} GB/s")
    for p in points:
        ax.loglog(p["intensity"], p["achieved_flops"] / 1e9, "o")
        ax.annotate(p["label"], (p["intensity"], p["achieved_flops"] / 1e9), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("achieved GFLOP/s")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
