"""Write the report: markdown (paste into a document), CSV (spreadsheets), a self-contained HTML page
(publish it: bench/report/page.py), and the plots."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..analysis.frame import records_frame
from . import Section, sections
from .formatting import display
from .page import render_page


@dataclass
class Part:
    """One section as the report shows it: its table (raw, as in the CSV) and the figures it wrote."""

    name: str
    section: Section
    table: pd.DataFrame
    figures: list[Path] = field(default_factory=list)


def report_frame(records: list, peaks: dict | None = None, prices: dict[str, float] | None = None) -> pd.DataFrame:
    """The frame every section reads: `peaks` maps machine_id to measured ceilings (`bench peak`), `prices`
    machine_id to $/hour (adds cost columns for those machines)."""
    df = records_frame(records)
    df.attrs["peaks"] = peaks or {}
    df.attrs["prices"] = prices or {}
    return df


def build_parts(df: pd.DataFrame, out_dir: Path) -> list[Part]:
    """Every section with rows, in order, its plots written to `out_dir`."""
    parts = []
    if df.empty:
        return parts
    for name in sorted(sections.names(), key=lambda n: sections.get(n).order):
        sec = sections.get(name)
        table = sec.build(df)
        if table is None or table.empty:
            continue
        parts.append(Part(name, sec, table, list(sec.plot(df, out_dir)) if sec.plot else []))
    return parts


def markdown(df: pd.DataFrame, parts: list[Part]) -> str:
    md = ["# Benchmark report\n"]
    if df.empty:
        md.append("No records found.\n")
        return "\n".join(md)
    machines = sorted(set(df["machine"].dropna()))
    md.append(f"Machine(s): {', '.join(machines)}. Points: {len(df)} ({(df['status'] == 'ok').sum()} ok).\n")
    for part in parts:
        md.append(f"## {part.section.title}\n\n{display(part.table).to_markdown(index=False)}\n")
        if part.section.note:
            md.append(f"{part.section.note}\n")
        md += [f"![{figure.stem}]({figure.name})\n" for figure in part.figures]
    return "\n".join(md)


def write_report(df: pd.DataFrame, out_dir: Path) -> tuple[str, list[Path]]:
    """Write report.md, one CSV per section, the plots and report.html; return the markdown and the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = build_parts(df, out_dir)
    csvs = []
    for part in parts:
        csvs.append(out_dir / f"{part.name}.csv")
        part.table.to_csv(csvs[-1], index=False)
    md = markdown(df, parts)
    (out_dir / "report.md").write_text(md, encoding="utf-8")
    (out_dir / "report.html").write_text(render_page(df, parts), encoding="utf-8")
    figures = [figure for part in parts for figure in part.figures]
    return md, [out_dir / "report.md", *csvs, *figures, out_dir / "report.html"]


def build_report(records: list, out_dir: Path, peaks: dict | None = None,
                 prices: dict[str, float] | None = None) -> tuple[str, list[Path]]:
    """Return the markdown text and the files written (report.md, one CSV per section, report.html, plots)."""
    return write_report(report_frame(records, peaks, prices), out_dir)
