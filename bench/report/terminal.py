"""The narrow table a terminal shows after a run or a report: every point in 120 columns, one table per
scenario, then the answer per model and shape, and where the files are."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from textwrap import shorten

import pandas as pd

from ..analysis.frame import SHAPE
from ..analysis.serving import capacity_estimate, capacity_text, load_text
from .answer import best_variants, bound_value, headline, quality_state, shape_label
from .formatting import natural_order, ratio_cell
from .serving import engine_of

TERMINAL_WIDTH = 120  # the widest a table printed to a terminal or a log gets
NOTES_MIN = 20  # the terminal table's notes column is never narrower (flags such as "unstable (cv 15%)")
FOLDABLE = (("machine", "variant"), ("capacity at SLO",), ("model",))  # what folds, in turn, where notes lack room
FOLD_MIN = 10  # ... never narrower than this
COLUMN_GAP = 3  # between two columns of a SIMPLE_HEAD table without edges: padding, the (blank) rule, padding


def _quality_short(row) -> str:
    """The quality cell of the terminal table; random weights are said here, once, rather than in the notes."""
    state = quality_state(row)
    if state in ("within", "breaks"):
        _, value, _ = bound_value(row)
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
    """The points (compact columns) in one table per scenario, its name said once above its rows (a scenario's
    options run longer than a terminal line), then the answer per model and shape; serving points in their own
    tables, with their capacity and load instead of a latency ratio."""
    from rich.table import Table
    from rich.text import Text

    machines, devices = df["machine"].nunique() > 1, df["device"].nunique() > 1
    scenarios: dict[str, list[list[str]]] = {}
    for _, r in df[~df["serving"]].sort_values(["scenario", *SHAPE, "p50_ms"], kind="stable").iterrows():
        speed = "baseline" if r["speedup_p50_sig"] == "baseline" else ratio_cell(
            r["speedup_p50"], r["speedup_p50_ci_low"], r["speedup_p50_ci_high"], r["speedup_p50_sig"])
        cells = ([r["machine"]] if machines else []) + [
            r["model"], r["variant"], _shape_in_scenario(r, devices),
            f"{r['p50_ms']:.{1 if r['p50_ms'] < 1000 else 0}f}" if pd.notna(r["p50_ms"]) else "",
            speed, f"{r['size_ratio']:.2f}x" if pd.notna(r["size_ratio"]) else "", _quality_short(r), _notes(r)]
        scenarios.setdefault(r["scenario"], []).append([str(c) for c in cells])
    columns = (["machine"] if machines else []) + ["model", "variant", "shape", "p50 ms", "vs fp32 [95% CI]", "size",
                                                   "quality", "notes"]
    _print_tables(console, scenarios, columns, right={"p50 ms", "size"})
    _print_serving(console, df[df["serving"]], machines)
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


def _notes(row) -> str:
    flags = "; ".join(f for f in row["flags"].split("; ") if f and f != "random weights")
    return flags if row["status"] == "ok" else f"{row['status']}: {shorten(row['error'], 60, placeholder=' ...')}"


def _print_serving(console, df: pd.DataFrame, machines: bool) -> None:
    """Serving points, one table per scenario: engine, the load of the main run, the capacity at the SLO (its
    interval across processes) and the main run's throughput and tail latencies."""
    from rich.text import Text

    tables: dict[str, list[list[str]]] = {}
    for _, r in df.sort_values(["scenario", "model", "variant"], kind="stable", key=natural_order).iterrows():
        m = r["record"].metrics.serving if r["status"] == "ok" else None
        figures = ["", "", "", ""] if m is None else [
            load_text(m), f"{m.output_tokens_per_s:.1f}" if m.output_tokens else f"{m.requests_per_s:.1f} req/s",
            _ms(m.ttft_ms.p99 if m.ttft_ms.count else m.e2e_ms.p99), _ms(m.tpot_ms.p99)]
        capacity = capacity_text(capacity_estimate(r["process_records"])) if m is not None else ""
        cells = ([r["machine"]] if machines else []) + [r["model"], r["variant"], engine_of(r), figures[0], capacity,
                                                        *figures[1:], _notes(r)]
        tables.setdefault(r["scenario"], []).append([str(c) for c in cells])
    if not tables:
        return
    columns = (["machine"] if machines else []) + ["model", "variant", "engine", "load", "capacity at SLO",
                                                   "out tok/s", "p99 TTFT", "p99 TPOT", "notes"]
    _print_tables(console, tables, columns, right={"out tok/s", "p99 TTFT", "p99 TPOT"})
    console.print(Text("Serving: the answer is the capacity at the SLO (p99 TTFT: E2E for embeddings); see the "
                       "report's serving sections.", style="dim"))


def _ms(value) -> str:
    return "" if value is None else f"{value:.{1 if value < 1000 else 0}f} ms"


def _print_tables(console, tables: dict[str, list[list[str]]], columns: list[str], right: set[str]) -> None:
    """One table per scenario under its heading. One line per point: every column but the notes keeps its widest
    cell (over every scenario's table, so the tables line up) and the notes wrap in what is left; where that leaves
    the notes less than NOTES_MIN (or their longest, if shorter), names and the capacity fold instead (_fold)."""
    from rich.text import Text

    rows = [row for table_rows in tables.values() for row in table_rows]
    widest = [max([len(column), *(len(row[i]) for row in rows)]) for i, column in enumerate(columns)]
    notes = min(NOTES_MIN, widest[-1])
    deficit = notes - (console.width - sum(widest[:-1]) - COLUMN_GAP * (len(columns) - 1))
    folded = _fold(columns, widest, deficit)
    for scenario, table_rows in tables.items():
        console.print(_scenario_heading(scenario))
        table = _points_table(columns, widest, folded, notes, right)
        for row in table_rows:
            table.add_row(*(Text(c) for c in row))
        console.print(table)


def _scenario_heading(scenario: str):
    from rich.text import Text

    return Text(f"scenario: {scenario}", style="italic")


def _shape_in_scenario(row, device: bool) -> str:
    """`b8 s128`: the shape under its scenario's heading."""
    return shape_label(row, device).removeprefix(f"{row['scenario']} ")


def _fold(columns: list[str], widest: list[int], deficit: int) -> dict[str, int]:
    """The widths the foldable columns shrink to so that the notes get their room back (`deficit`): one character
    at a time from the widest of the machine and variant names, then the capacity, then the model name, none below
    FOLD_MIN."""
    widths = {c: widest[i] for i, c in enumerate(columns)}
    for group in FOLDABLE:
        present = [c for c in group if c in widths]
        while deficit > 0 and present and max(widths[c] for c in present) > FOLD_MIN:
            widths[max(present, key=widths.get)] -= 1
            deficit -= 1
    return {c: widths[c] for i, c in enumerate(columns) if widths[c] < widest[i]}


def _points_table(columns: list[str], widest: list[int], folded: dict[str, int], notes: int, right: set[str]):
    """An empty table of the terminal's columns: each as wide as its widest cell but the notes, which wrap, and
    the folded ones."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for i, column in enumerate(columns):
        fit = {"ratio": 1, "min_width": notes} if column == "notes" else {"min_width": widest[i], "no_wrap": True}
        if column in folded:
            fit = {"max_width": folded[column]}
        table.add_column(column, justify="right" if column in right else "left", overflow="fold", **fit)
    return table
