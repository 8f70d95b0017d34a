"""The answer's charts: latency per variant with the interval of its median, speed against quality with the
bound and the Pareto front, and with several machines the same work on each; and the Pareto front helper the
pruning plot shares."""

from __future__ import annotations

from pathlib import Path
from textwrap import fill

import numpy as np
import pandas as pd

from ..analysis.frame import SHAPE
from .answer import bound_value, quality_state, shape_label
from .formatting import ratio_cell
from .hardware import hardware_table

TICK_WIDTH = 36  # characters per line of a chart's row label (a server scenario's options run long)
COLOURS = {"baseline": "#1f5f9e", "within": "#2e7d32", "breaks": "#c62828", "error": "#ef6c00",
           "not meaningful": "#8a8a8a", "not measured": "#8a8a8a"}
LEGEND = {"baseline": "fp32 baseline", "within": "within the quality bound", "breaks": "breaks the quality bound",
          "error": "quality check failed", "not meaningful": "quality not meaningful (random weights)",
          "not measured": "quality not measured"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _saved(fig, path: Path) -> Path:
    """Lay a chart out, write it and free it."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def _state(row) -> str:
    return "baseline" if row["speedup_p50_sig"] == "baseline" else quality_state(row)


def _median_interval(runs) -> tuple[float, float] | None:
    """The 95% interval of the median, per process (the records' `median_ci95_ms`), joined over processes."""
    from ..measurement.stats import median_ci

    intervals = [median_ci(run.samples_ms) for run in runs]
    if not intervals or any(i is None for i in intervals):
        return None
    return min(i[0] for i in intervals), max(i[1] for i in intervals)


def _legend(ax, states) -> None:
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=COLOURS[s], label=LEGEND[s]) for s in COLOURS if s in states], fontsize=7,
              loc="upper right")


def _latency_chart(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Per machine and model: p50 per variant (and shape) with the 95% interval of the median."""
    plt = _pyplot()
    written = []
    ok = df[(df["status"] == "ok") & df["p50_ms"].notna() & ~df["serving"]]  # serving points: their own charts
    for (machine, model), rows in ok.groupby(["machine", "model"], sort=True):
        rows = rows.sort_values(["device", "scenario", "batch", "seq", "p50_ms"], kind="stable")
        shapes = rows[SHAPE].drop_duplicates().shape[0] > 1
        fig, ax = plt.subplots(figsize=(8.5, 1.4 + 0.38 * len(rows)))
        y = np.arange(len(rows))
        p50 = rows["p50_ms"].to_numpy(dtype=float)
        intervals = [_median_interval(runs) for runs in rows["runs"]]
        low = np.array([p - i[0] if i else 0.0 for p, i in zip(p50, intervals)])
        high = np.array([i[1] - p if i else 0.0 for p, i in zip(p50, intervals)])
        states = [_state(r) for _, r in rows.iterrows()]
        ax.barh(y, p50, xerr=[low, high], color=[COLOURS[s] for s in states], capsize=3, ecolor="black")
        for yi, (_, r), interval, end in zip(y, rows.iterrows(), intervals, p50 + high):
            note = "baseline" if r["speedup_p50_sig"] == "baseline" else ratio_cell(
                r["speedup_p50"], r["speedup_p50_ci_low"], r["speedup_p50_ci_high"], r["speedup_p50_sig"])
            ax.annotate(note + ("" if interval else " (too few queries for an interval)"), (end, yi),
                        xytext=(4, 0), textcoords="offset points", va="center", fontsize=7)
        ax.set_yticks(y, [fill(f"{r['variant']} · {shape_label(r)}" if shapes else r["variant"], TICK_WIDTH)
                          for _, r in rows.iterrows()], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, float((p50 + high).max()) * 1.45)
        ax.set_xlabel("p50 latency (ms); whiskers: 95% interval of the median")
        ax.set_title(f"{model} on {machine}: latency per variant" +
                     ("" if shapes else f" ({shape_label(rows.iloc[0])})"), fontsize=10)
        _legend(ax, set(states))
        ax.grid(True, axis="x", alpha=0.3)
        written.append(_saved(fig, out_dir / f"latency-{model}-{machine[:24]}.png"))
    return written


def pareto_front(points: list[tuple[float, float]], higher_x: bool = True,
                 higher_y: bool = True) -> list[tuple[float, float]]:
    """The points no other point matches or beats on both x and y (higher is better, or lower where told), by x."""
    def beats(q, p) -> bool:
        return (q[0] >= p[0] if higher_x else q[0] <= p[0]) and (q[1] >= p[1] if higher_y else q[1] <= p[1])

    return sorted({p for p in points if not any(q != p and beats(q, p) for q in points)})


def _quality_chart(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Per machine and model with meaningful quality: each variant's speedup (with its interval) against its
    quality, the bound, fp32 at 1.0x and the Pareto front per shape. Random-weight models get none: their
    quality says nothing."""
    plt = _pyplot()
    written = []
    ok = df[(df["status"] == "ok") & df["speedup_p50"].notna() & (df["speedup_p50_sig"] != "baseline")
            & (df["quality_meaningful"] == True)]  # noqa: E712 - a column of True, False and None
    for (machine, model), rows in ok.groupby(["machine", "model"], sort=True):
        measured = [(r, *bound_value(r)) for _, r in rows.iterrows()]
        measured = [(r, metric, value, limit) for r, metric, value, limit in measured if value is not None]
        if not measured:
            continue
        metric, limit = measured[0][1], measured[0][3]
        higher_better = limit.startswith(">=")
        shapes = rows[SHAPE].drop_duplicates().shape[0] > 1
        fig, ax = plt.subplots(figsize=(8, 4.8))
        by_shape: dict[str, list] = {}
        for r, _, value, _ in measured:
            x = float(r["speedup_p50"])
            lo, hi = r["speedup_p50_ci_low"], r["speedup_p50_ci_high"]
            xerr = [[x - lo], [hi - x]] if pd.notna(lo) and pd.notna(hi) else None
            ax.errorbar([x], [value], xerr=xerr, fmt="o", color=COLOURS[_state(r)], capsize=3)
            label = f"{r['variant']} · {shape_label(r)}" if shapes else r["variant"]
            ax.annotate(label, (x, value), fontsize=7, xytext=(4, 4), textcoords="offset points")
            by_shape.setdefault(shape_label(r), []).append((x, float(value)))
        ax.axvline(1.0, color=COLOURS["baseline"], lw=1, label="fp32 baseline (1.0x)")
        ax.axhline(float(limit.split()[1]), color=COLOURS["breaks"], ls=":", lw=1,
                   label=f"quality bound ({metric} {limit})")
        for i, points in enumerate(by_shape.values()):
            front = pareto_front(points, higher_y=higher_better)
            ax.plot([p[0] for p in front], [p[1] for p in front], "k--", lw=1,
                    label=("Pareto front" + (" (per shape)" if shapes else "")) if i == 0 else None)
        ax.margins(x=0.12, y=0.12)  # room for the labels of the points at the edges
        ax.set_xlabel("speedup over fp32 (p50; higher is better); whiskers: 95% interval")
        ax.set_ylabel(f"{metric} vs fp32 ({'higher' if higher_better else 'lower'} is better)")
        ax.set_title(f"{model} on {machine}: speed against quality", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        written.append(_saved(fig, out_dir / f"speed-quality-{model}-{machine[:24]}.png"))
    return written


def _machines_chart(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """With several machines: per model, p50 of the same work on each machine (the hardware section's data)."""
    table = hardware_table(df)
    table = table[table["runner_up"] != ""] if table is not None else None
    if table is None or table.empty:
        return []
    plt = _pyplot()
    groups = [c[: -len(" p50_ms")] for c in table.columns if c.endswith(" p50_ms")]
    written = []
    for model, rows in table.groupby("model", sort=True):
        fig, ax = plt.subplots(figsize=(8.5, 1.5 + 0.3 * len(rows) * len(groups)))
        y = np.arange(len(rows))
        height = 0.8 / len(groups)
        p50 = np.column_stack([rows[f"{group} p50_ms"].to_numpy(dtype=float) for group in groups])
        for i, group in enumerate(groups):
            ax.barh(y + i * height, p50[:, i], height, label=group)
        for yi, (_, r), end in zip(y, rows.iterrows(), np.nanmax(p50, axis=1)):
            best = ratio_cell(r["best_speedup"], r["best_speedup_ci_low"], r["best_speedup_ci_high"],
                              r["best_speedup_sig"])
            ax.annotate(f"best: {r['best']}\n{best} vs {r['runner_up']}", (end, yi + height * (len(groups) - 1) / 2),
                        xytext=(4, 0), textcoords="offset points", fontsize=7, va="center")
        ax.set_xlim(0, float(np.nanmax(p50)) * 1.5)
        ax.set_yticks(y + height * (len(groups) - 1) / 2,
                      [fill(f"{r['backend']}/{r['variant']} · {shape_label(r)}", TICK_WIDTH)
                       for _, r in rows.iterrows()], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("p50 latency (ms, measured; lower is better)")
        ax.set_title(f"{model}: the same work on each machine", fontsize=10)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.grid(True, axis="x", alpha=0.3)
        written.append(_saved(fig, out_dir / f"machines-{model}.png"))
    return written


def answer_charts(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    return _latency_chart(df, out_dir) + _quality_chart(df, out_dir) + _machines_chart(df, out_dir)
