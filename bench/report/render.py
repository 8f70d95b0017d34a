"""Write the report: markdown (paste into a document), CSV (spreadsheets) and HTML, plus plots."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from . import sections
from .frame import records_frame

FLOAT_FORMAT = {"cv": "{:.1%}", "overhead": "{:.0%}", "cosine_mean": "{:.5f}", "cosine_min": "{:.5f}", "top1_agree": "{:.3f}",
                "kl_mean": "{:.2e}", "ppl_ratio": "{:.4f}", "perplexity": "{:.2f}"}


def _fmt(value, column: str):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        if column in FLOAT_FORMAT:
            return FLOAT_FORMAT[column].format(value)
        if "speedup" in column or "ratio" in column:
            return f"{value:.2f}x"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.1f}"
    return value


def _interval(shown: str, low, high, sig) -> str:
    """A ratio as published: `1.52x [1.47, 1.58]`, with `n.s.` or `untested` where the test says so."""
    if not shown:
        return shown
    mark = f" {sig}" if sig in ("n.s.", "untested") else ""
    has_interval = isinstance(low, float) and not (math.isnan(low) or math.isnan(high))
    return shown + mark + (f" [{low:.2f}, {high:.2f}]" if has_interval else "")


def display(table: pd.DataFrame) -> pd.DataFrame:
    """Formatted for reading; a ratio's `_ci_low`, `_ci_high` and `_sig` columns (kept apart in the CSV)
    are folded into the ratio's cell."""
    out = table.copy()
    for col in out.columns:
        out[col] = [_fmt(v, col) for v in out[col]]
    for col in [c for c in table.columns if f"{c}_ci_low" in table]:
        parts = [f"{col}_ci_low", f"{col}_ci_high", f"{col}_sig"]
        sig = table[parts[2]] if parts[2] in table else [""] * len(table)
        out[col] = [_interval(v, lo, hi, s) for v, lo, hi, s in zip(out[col], table[parts[0]], table[parts[1]], sig)]
        out = out.drop(columns=[c for c in parts if c in out])
    return out


def build_report(records: list[dict], out_dir: Path, peaks: dict | None = None,
                 prices: dict[str, float] | None = None) -> tuple[str, list[Path]]:
    """Return the markdown text and the files written (report.md, one CSV per section, report.html, plots).

    `peaks` maps machine_id to measured ceilings (`bench peak`); `prices` maps machine_id to $/hour and adds
    cost columns for those machines.
    """
    df = records_frame(records)
    df.attrs["peaks"] = peaks or {}
    df.attrs["prices"] = prices or {}
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    md_parts, html_parts = ["# Benchmark report\n"], ["<html><head><meta charset='utf-8'><title>Benchmark report</title>"
                                                     "<style>td,th{padding:2px 8px;font-family:monospace}</style>"
                                                     "</head><body><h1>Benchmark report</h1>"]
    if df.empty:
        md_parts.append("No records found.\n")
    else:
        machines = sorted(set(df["machine"].dropna()))
        md_parts.append(f"Machine(s): {', '.join(machines)}. Points: {len(df)} "
                        f"({(df['status'] == 'ok').sum()} ok).\n")
        for name in sorted(sections.names(), key=lambda n: sections.get(n).order):
            sec = sections.get(name)
            table = sec.build(df)
            if table is None or table.empty:
                continue
            csv = out_dir / f"{name}.csv"
            table.to_csv(csv, index=False)
            written.append(csv)
            shown = display(table)
            md_parts.append(f"## {sec.title}\n\n{shown.to_markdown(index=False)}\n")
            html_parts.append(f"<h2>{sec.title}</h2>{shown.to_html(index=False, escape=True)}")
            if sec.note:
                md_parts.append(f"{sec.note}\n")
                html_parts.append(f"<p>{sec.note}</p>")
            for figure in (sec.plot(df, out_dir) if sec.plot else []):
                written.append(figure)
                md_parts.append(f"![{figure.stem}]({figure.name})\n")
                html_parts.append(f"<img src='{figure.name}' style='max-width:900px'>")
    md = "\n".join(md_parts)
    (out_dir / "report.md").write_text(md, encoding="utf-8")
    (out_dir / "report.html").write_text("".join(html_parts) + "</body></html>", encoding="utf-8")
    written = [out_dir / "report.md", *written, out_dir / "report.html"]
    return md, written
