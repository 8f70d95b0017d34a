"""Which machine should serve each model: the same work measured on every machine of the report, side by
side, with the fastest marked and whether it is significantly fastest.

Only measured figures appear here; roofline projections onto catalog chips stay in their own, labelled
section (efficiency.py). The section appears only when a report holds several machines.
"""

from __future__ import annotations

import math

import pandas as pd

from ..analysis.frame import SIGNIFICANCE
from ..compare.stats import compare
from ..hardware.cost import cost_per_million
from . import section

KEY = ["model", "backend", "variant", "scenario", "batch", "seq"]
MEASURED = ["p50_ms", "samples_per_s", "output_tokens_per_s", "usd_per_m_inferences", "usd_per_m_tokens",
            "j_per_inference"]
BEST = ["best", "runner_up", "best_speedup", "best_speedup_ci_low", "best_speedup_ci_high", "best_speedup_sig",
        "processes"]


def hardware_labels(df: pd.DataFrame) -> list[str]:
    """A column group per machine, or per machine and device where a machine measured several devices."""
    devices = df.groupby("machine")["device"].nunique()
    return [m if devices[m] == 1 else f"{m}/{d}" for m, d in zip(df["machine"], df["device"])]


def _measured(row, price: float | None) -> list:
    """The MEASURED figures of one point on one machine (None where not measured or not priced)."""
    metrics = row["record"].metrics
    tokens_per_s = metrics.generation.throughput.output_tokens_per_s if metrics.generation else None
    energy = metrics.energy if metrics.energy and metrics.energy.status == "measured" else None
    priced = price is not None
    return [row["p50_ms"], row["samples_per_s"], tokens_per_s,
            cost_per_million(price, row["samples_per_s"]) if priced else None,
            cost_per_million(price, tokens_per_s) if priced and tokens_per_s else None,
            energy.joules_per_inference if energy else None]


def _best(group: pd.DataFrame) -> dict:
    """The lowest p50, and its speedup over the runner-up with the interval and verdict of the one rule."""
    ranked = group.sort_values("p50_ms", kind="stable")
    best = ranked.iloc[0]
    out = {"best": best["hardware"], "runner_up": "", "best_speedup": math.nan, "best_speedup_ci_low": math.nan,
           "best_speedup_ci_high": math.nan, "best_speedup_sig": "only one machine", "processes": ""}
    if len(ranked) < 2:
        return out
    runner_up = ranked.iloc[1]
    out["runner_up"] = runner_up["hardware"]
    cmp = compare(runner_up["runs"], best["runs"])
    if cmp is None:
        out.update(best_speedup=runner_up["p50_ms"] / best["p50_ms"], best_speedup_sig="untested")
        return out
    speedup, low, high = cmp.speedup()
    out.update(best_speedup=speedup, best_speedup_ci_low=low, best_speedup_ci_high=high,
               best_speedup_sig=cmp.verdict,
               processes=cmp.processes)
    return out


@section("hardware", "Hardware: the same work measured on each machine", order=15,
         note="One column group per machine (machine/device where a machine measured several devices); every "
              "figure is measured. best = lowest p50; best_speedup = the runner-up's p50 / best's, with its 95% "
              "interval; `n.s.` = the best is not significantly faster than the runner-up. $ per million "
              "inferences (tokens) = price / 3600 / rate x 1e6 for machines given a price (--price "
              "MACHINE=USD_PER_HOUR or --prices FILE); J per inference where an energy counter was read. "
              "Roofline projections onto other chips are in the projection section, never here. " + SIGNIFICANCE)
def hardware_table(df: pd.DataFrame) -> pd.DataFrame | None:
    if df["machine"].nunique() < 2:
        return None
    ok = df[(df["status"] == "ok") & df["p50_ms"].notna() & ~df["serving"]].copy()  # serving: by capacity
    if ok.empty:
        return None
    ok["hardware"] = hardware_labels(ok)
    prices = df.attrs.get("prices", {})
    groups = sorted(ok["hardware"].unique())
    rows = []
    for key, group in ok.groupby(KEY, sort=True):
        group = group.drop_duplicates("hardware", keep="last")
        row = dict(zip(KEY, key))
        for _, point in group.iterrows():
            figures = _measured(point, prices.get(point["machine"]))
            row.update({f"{point['hardware']} {name}": value for name, value in zip(MEASURED, figures)})
        rows.append({**row, **_best(group)})
    table = pd.DataFrame(rows).reindex(columns=KEY + [f"{g} {name}" for g in groups for name in MEASURED] + BEST)
    return table.dropna(axis=1, how="all")
