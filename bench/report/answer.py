"""The answer a reader wants first, its charts, and the narrow table a terminal shows.

Per model and shape (machine, device, scenario, batch, sequence length): the best variant within the quality
bound. Best = the highest speedup over the fp32 PyTorch point of the same shape and machine (and suite: frame.py),
preferring a variant that is significantly faster (the rule of bench/compare/stats.py) over one whose estimate is
higher but not significant. Where quality cannot decide (random weights, quality not measured) the answer says so
and ranks on speed alone; where no variant meets the bound, or none is significantly faster, it keeps fp32 (naming
the closest variant only as information).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from textwrap import fill, shorten

import numpy as np
import pandas as pd

from ..analysis.frame import SHAPE, SIGNIFICANCE, with_interval
from . import section

WITHIN = "within bound"
NONE_FASTER = "none significantly faster: keep fp32"
NOTHING_MEETS = "nothing meets the quality bound"
RANDOM = "speed only: random weights"
UNMEASURED = "speed only: quality not measured"
NO_BASELINE = "no fp32 baseline"
ONLY_BASELINE = "only the baseline measured"
ALL_FAILED = "every point failed"
TERMINAL_WIDTH = 120  # the widest a table printed to a terminal or a log gets
NOTES_MIN = 20  # the terminal table's notes column is never narrower (flags such as "unstable (cv 15%)")
TICK_WIDTH = 36  # characters per line of a chart's row label (a server scenario's options run long)
BEST_COLUMNS = [*SHAPE, "weights", "answer", "variant", "backend", "p50_ms", "baseline_p50_ms",
                *with_interval("speedup_p50"), "processes", "size_ratio", "quality", "flags", "closest", "excluded"]
COLOURS = {"baseline": "#1f5f9e", "within": "#2e7d32", "breaks": "#c62828", "error": "#ef6c00",
           "not meaningful": "#8a8a8a", "not measured": "#8a8a8a"}
LEGEND = {"baseline": "fp32 baseline", "within": "within the quality bound", "breaks": "breaks the quality bound",
          "error": "quality check failed", "not meaningful": "quality not meaningful (random weights)",
          "not measured": "quality not measured"}


def quality_state(row) -> str:
    """within, breaks, not meaningful, error or not measured: what a point's quality says."""
    verdict = row["quality_verdict"]
    if not isinstance(verdict, str):
        return "not measured"
    return {"within bound": "within", "breaks bound": "breaks", "error": "error"}.get(verdict, "not meaningful")


def _bound_value(row) -> tuple[str, float | None, str]:
    """(metric, the point's value of it, the bound as text) from the record's quality bound."""
    quality = row["record"].metrics.quality
    bound = quality.bound if quality else None
    if bound is None:
        return "", None, ""
    limit = f">= {bound.min:g}" if bound.min is not None else f"<= {bound.max:g}"
    return bound.metric, getattr(quality, bound.metric, None), limit


def quality_text(row) -> str:
    """A point's quality in words: the bound's metric, its value, and the bound."""
    state = quality_state(row)
    if state == "not measured":
        return "not measured"
    if state == "not meaningful":
        return "not meaningful (random weights)"
    if state == "error":
        return "quality check failed"
    metric, value, limit = _bound_value(row)
    if value is None:
        return row["quality_verdict"]
    return f"{metric} {value:.5g} ({'within' if state == 'within' else 'BREAKS'} {limit})"


def _ranked(rows: pd.DataFrame) -> pd.DataFrame:
    """Best first: significantly faster before not, then the higher speedup."""
    return rows.assign(_faster=rows["speedup_p50_sig"] == "faster").sort_values(
        ["_faster", "speedup_p50"], ascending=False, kind="stable").drop(columns="_faster")


def _excluded(others: pd.DataFrame, pick_speedup: float) -> str:
    """The variants faster than the pick that the quality bound ruled out, fastest first."""
    ruled_out = [quality_state(r) in ("breaks", "error") and r["speedup_p50"] > pick_speedup
                 for _, r in others.iterrows()]
    return "; ".join(f"{r['variant']} {r['speedup_p50']:.2f}x ({quality_text(r)})"
                     for _, r in _ranked(others[ruled_out]).iterrows())


def _baseline_of(rows: pd.DataFrame, row) -> pd.Series:
    """The fp32 point a row of this shape is measured against (its own suite's: frame.attach_baseline)."""
    return rows[rows["point_id"] == row["baseline_point"]].iloc[0]


def _answer(rows: pd.DataFrame) -> tuple[str, pd.Series | None, pd.Series | None, str]:
    """(answer, the row it names, the closest variant where none is significantly faster and fp32 is kept,
    what the quality bound excluded) for the points of one shape."""
    ok = rows[(rows["status"] == "ok") & rows["p50_ms"].notna()]
    if ok.empty:
        return ALL_FAILED, None, None, ""
    base = ok[ok["speedup_p50_sig"] == "baseline"]
    others = ok[(ok["speedup_p50_sig"] != "baseline") & ok["speedup_p50"].notna()]
    if base.empty:
        return NO_BASELINE, ok.sort_values("p50_ms", kind="stable").iloc[0], None, ""
    if others.empty:
        return ONLY_BASELINE, base.iloc[0], None, ""
    states = [quality_state(r) for _, r in others.iterrows()]
    within = others[[s == "within" for s in states]]
    if not within.empty:
        best = _ranked(within).iloc[0]
        if best["speedup_p50_sig"] == "faster":
            return WITHIN, best, None, _excluded(others, best["speedup_p50"])
        return NONE_FASTER, _baseline_of(ok, best), best, _excluded(others, 1.0)
    if any(s in ("breaks", "error") for s in states):
        return NOTHING_MEETS, _baseline_of(ok, _ranked(others).iloc[0]), None, _excluded(others, 1.0)
    answer = RANDOM if all(s == "not meaningful" for s in states) else UNMEASURED
    best = _ranked(others).iloc[0]
    if best["speedup_p50_sig"] == "faster":
        return answer, best, None, ""
    return answer, _baseline_of(ok, best), best, ""


def _closest(row) -> str:
    """The variant nearest to fp32 where none is significantly faster: information, never the pick."""
    speed = speed_phrase(row["speedup_p50"], row["speedup_p50_ci_low"], row["speedup_p50_ci_high"],
                         row["speedup_p50_sig"])
    quality = f", quality {quality_text(row)}" if quality_state(row) == "within" else ""
    return f"{row['variant']}: {speed}{quality}"


def best_variants(df: pd.DataFrame) -> pd.DataFrame | None:
    """One row per (machine, model, shape): the answer, the variant it names (fp32 where none is significantly
    faster), its speedup with the interval, size ratio, quality and flags, the closest variant where fp32 is
    kept, and which faster variants the bound excluded."""
    rows = []
    for key, group in df.groupby(SHAPE, sort=True, dropna=False):
        answer, pick, closest, excluded = _answer(group)
        row = {**dict(zip(SHAPE, key)), "weights": group["weights"].iloc[0], "answer": answer, "excluded": excluded,
               "closest": _closest(closest) if closest is not None else "", "baseline_p50_ms": math.nan}
        if pick is not None:
            row.update({k: pick[k] for k in ("variant", "backend", "p50_ms", *with_interval("speedup_p50"),
                                             "processes", "size_ratio")})
            row.update(quality=quality_text(pick),
                       flags="; ".join(f for f in pick["flags"].split("; ") if f and f != "random weights"))
            if isinstance(pick["baseline_point"], str):
                row["baseline_p50_ms"] = _baseline_of(group, pick)["p50_ms"]
        rows.append(row)
    if not rows:
        return None
    table = pd.DataFrame(rows).reindex(columns=BEST_COLUMNS)
    return table.drop(columns="target") if (table["target"].fillna("") == "").all() else table


def speed_phrase(value, low, high, sig, than: str = "fp32") -> str:
    """`2.95x faster than fp32 [95% CI 2.85, 3.01]`, or what the test allows one to say instead."""
    interval = f" [95% CI {low:.2f}, {high:.2f}]" if pd.notna(low) and pd.notna(high) else ""
    said = {"faster": f"faster than {than}", "slower": f"the speed of {than} (significantly slower)",
            "n.s.": f"the speed of {than} (not significantly different)"}.get(sig, f"the speed of {than} (untested)")
    return f"{value:.2f}x {said}{interval}"


def headline(row) -> str:
    """The answer for one shape in a sentence: variant, speedup with its interval, size, quality, flags."""
    answer = row["answer"]
    if answer == ALL_FAILED:
        return "every point at this shape failed (see the comparison table)"
    flags = f" Flags: {row['flags']}." if row["flags"] else ""
    if answer == NO_BASELINE:
        return f"No fp32 PyTorch baseline at this shape, so no speedup; fastest: {row['variant']} " \
               f"(p50 {row['p50_ms']:.3g} ms).{flags}"
    if answer == ONLY_BASELINE:
        return f"Only the fp32 baseline was measured (p50 {row['p50_ms']:.3g} ms).{flags}"
    if answer == NOTHING_MEETS:
        return f"Nothing meets the quality bound: keep {row['variant']}. Excluded: {row['excluded']}."
    excluded = f" Faster but over the bound: {row['excluded']}." if row["excluded"] else ""
    if row["closest"]:
        within = " within the quality bound" if answer == NONE_FASTER else ""
        said = f"No variant is significantly faster than fp32{within}: keep fp32. Closest: {row['closest']}."
        if answer in (RANDOM, UNMEASURED):
            return f"{said} Speed only: {_speed_only_reason(answer)}.{flags}"
        return f"{said}{flags}{excluded}"
    speed = speed_phrase(row["speedup_p50"], row["speedup_p50_ci_low"], row["speedup_p50_ci_high"],
                         row["speedup_p50_sig"])
    size = f", {row['size_ratio']:.2f}x the size" if pd.notna(row["size_ratio"]) else ""
    if answer in (RANDOM, UNMEASURED):
        return f"{row['variant']}: {speed}{size}. Speed only: {_speed_only_reason(answer)}.{flags}"
    return f"{row['variant']}: {speed}{size}, quality {row['quality']}.{flags}{excluded}"


def _speed_only_reason(answer: str) -> str:
    return "quality is not meaningful with random weights" if answer == RANDOM else "quality was not measured"


def shape_label(row, device: bool = False) -> str:
    """`single-stream b8 s128` (with the device where a report measured several)."""
    return f"{row['scenario']} b{row['batch']} s{row['seq']}" + (f" {row['device']}" if device else "")


# --- charts ------------------------------------------------------------------------------------------

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
    from .writer import ratio_cell

    written = []
    ok = df[(df["status"] == "ok") & df["p50_ms"].notna()]
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
        measured = [(r, *_bound_value(r)) for _, r in rows.iterrows()]
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
    from .hardware import hardware_table

    table = hardware_table(df)
    table = table[table["runner_up"] != ""] if table is not None else None
    if table is None or table.empty:
        return []
    plt = _pyplot()
    from .writer import ratio_cell

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


@section("best", "The answer: best variant per model within the quality bound", order=5, plot=answer_charts,
         note="Best = the highest p50 speedup over fp32 PyTorch at the same shape and machine among the variants "
              "within the quality bound, a significantly faster one first; where none is significantly faster the "
              "answer is fp32 and `closest` names the nearest variant for information. `speed only` = the quality "
              "cannot decide (random weights, or quality not measured); `nothing meets the quality bound` = keep "
              "fp32; `excluded` = faster variants the bound rules out. " + SIGNIFICANCE)
def best_section(df: pd.DataFrame) -> pd.DataFrame | None:
    table = best_variants(df)
    return table.drop(columns="machine") if table is not None and table["machine"].nunique() <= 1 else table


# --- the terminal ------------------------------------------------------------------------------------

def _quality_short(row) -> str:
    """The quality cell of the terminal table; random weights are said here, once, rather than in the notes."""
    state = quality_state(row)
    if state in ("within", "breaks"):
        _, value, _ = _bound_value(row)
        return f"{value:.5g} {'ok' if state == 'within' else 'BREAKS'}" if value is not None else state
    if state == "not meaningful" or row["weights"] == "random":
        return "random weights"
    return "error" if state == "error" else ""


def print_summary(console, df: pd.DataFrame, files: list[Path]) -> None:
    """Every point in a table that fits 120 columns, the answer per model, and where the files are (the wide
    tables, the page and the plots)."""
    from rich.console import Console
    from rich.text import Text

    # a pipe or a CI log gets the full 120 columns, a narrower terminal its own width
    width = min(console.width, TERMINAL_WIDTH) if console.is_terminal else TERMINAL_WIDTH
    console = Console(file=console.file, width=width, highlight=False, force_terminal=console.is_terminal,
                      no_color=console.no_color)
    if not df.empty:
        _print_points(console, df)
    page = next((f for f in files if f.suffix == ".html"), None)
    counts = Counter(f.suffix for f in files)
    console.print(Text(f"report: {page} (open it in a browser); beside it report.md, {counts['.csv']} CSV, "
                       f"{counts['.png']} PNG"))


def _print_points(console, df: pd.DataFrame) -> None:
    """The points (compact columns) in one table per scenario, its name said once above its rows (a server
    scenario's options run longer than a terminal line), then the answer per model and shape."""
    from rich.table import Table
    from rich.text import Text

    from .writer import ratio_cell

    machines, devices = df["machine"].nunique() > 1, df["device"].nunique() > 1
    scenarios: dict[str, list[list[str]]] = {}
    for _, r in df.sort_values(["scenario", *SHAPE, "p50_ms"], kind="stable").iterrows():
        speed = "baseline" if r["speedup_p50_sig"] == "baseline" else ratio_cell(
            r["speedup_p50"], r["speedup_p50_ci_low"], r["speedup_p50_ci_high"], r["speedup_p50_sig"])
        flags = "; ".join(f for f in r["flags"].split("; ") if f and f != "random weights")
        notes = flags if r["status"] == "ok" else f"{r['status']}: {shorten(r['error'], 60, placeholder=' ...')}"
        cells = ([r["machine"]] if machines else []) + [
            r["model"], r["variant"], _shape_in_scenario(r, devices),
            f"{r['p50_ms']:.{1 if r['p50_ms'] < 1000 else 0}f}" if pd.notna(r["p50_ms"]) else "",
            speed, f"{r['size_ratio']:.2f}x" if pd.notna(r["size_ratio"]) else "", _quality_short(r), notes]
        scenarios.setdefault(r["scenario"], []).append([str(c) for c in cells])
    columns = (["machine"] if machines else []) + ["model", "variant", "shape", "p50 ms", "vs fp32 [95% CI]", "size",
                                                   "quality", "notes"]
    # one line per point: every column but the notes keeps its widest cell (over every scenario's table, so the
    # tables line up) and the notes wrap in what is left; where that leaves the notes less than NOTES_MIN, long
    # variant (and machine) names fold instead
    rows = [row for table_rows in scenarios.values() for row in table_rows]
    widest = [max([len(column), *(len(row[i]) for row in rows)]) for i, column in enumerate(columns)]
    deficit = NOTES_MIN - (console.width - sum(widest[:-1]) - 2 * (len(columns) - 1))
    for scenario, table_rows in scenarios.items():
        console.print(_scenario_heading(scenario))
        table = _points_table(columns, widest, deficit)
        for row in table_rows:
            table.add_row(*(Text(c) for c in row))
        console.print(table)
    best = best_variants(df)
    if best is None:
        return
    console.print(Text("Best variant per model, within the quality bound:", style="bold"))
    several = len(scenarios) > 1
    for scenario, rows in best.groupby("scenario", sort=True):
        if several:
            console.print(_scenario_heading(scenario))
        answers = Table.grid(padding=(0, 1))
        answers.add_column(style="bold")
        answers.add_column()
        for _, row in rows.iterrows():
            where = f"{row['machine']} · " if machines else ""
            shape = _shape_in_scenario(row, devices) if several else shape_label(row, devices)
            answers.add_row(Text(f"{where}{row['model']} ({shape}):"), Text(headline(row)))
        console.print(answers)


def _scenario_heading(scenario: str):
    from rich.text import Text

    return Text(f"scenario: {scenario}", style="italic")


def _shape_in_scenario(row, device: bool) -> str:
    """`b8 s128`: the shape under its scenario's heading."""
    return shape_label(row, device).removeprefix(f"{row['scenario']} ")


def _points_table(columns: list[str], widest: list[int], deficit: int):
    """An empty table of the terminal's columns: each as wide as its widest cell but the notes, which wrap."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for i, column in enumerate(columns):
        fit = {"ratio": 1, "min_width": NOTES_MIN} if column == "notes" else {"min_width": widest[i], "no_wrap": True}
        if deficit > 0 and column in ("variant", "machine"):
            fit = {"max_width": max(12, widest[i] - deficit)}
        table.add_column(column, justify="right" if column in ("p50 ms", "size") else "left", overflow="fold", **fit)
    return table
