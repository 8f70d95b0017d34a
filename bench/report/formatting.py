"""How a figure reads in a table: numbers to a sensible precision, a ratio with its interval and verdict.
A leaf: the writer, the page, the charts and the terminal all format through it."""

from __future__ import annotations

import math
import re

import pandas as pd

FLOAT_FORMAT = {"cv": "{:.1%}", "overhead": "{:.0%}", "cosine_mean": "{:.5f}", "cosine_min": "{:.5f}",
                "top1_agree": "{:.3f}", "kl_mean": "{:.2e}", "ppl_ratio": "{:.4f}", "perplexity": "{:.2f}"}


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


def ratio_cell(value, low, high, sig) -> str:
    """One ratio with its interval and verdict, as a table cell shows it (empty where there is none)."""
    return _interval(_fmt(value, "ratio"), low, high, sig)


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


def natural_order(column: pd.Series) -> pd.Series:
    """A sort key (DataFrame.sort_values(key=...)) under which numbers inside labels sort as numbers: users=8
    before users=32."""
    return column.map(lambda text: tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", str(text))))
