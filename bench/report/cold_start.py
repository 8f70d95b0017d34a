"""The cold-start table: the first query against the steady state of the same fresh session."""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import drop_single_machine, section

STEADY_WITHIN = 0.10  # a query is "steady" within 10% of the steady-state median


def cold_start_figures(samples_ms: list[float]) -> dict:
    """First query, steady state (median of the second half) and the first query from which every later
    one stays within STEADY_WITHIN of it."""
    x = np.asarray(samples_ms, dtype=float)
    steady = float(np.median(x[len(x) // 2:]))
    outside = np.nonzero(np.abs(x - steady) > STEADY_WITHIN * steady)[0]
    settled = int(outside[-1]) + 2 if len(outside) else 1  # 1-based index of the first steady query
    return {"first_ms": float(x[0]), "steady_p50_ms": steady, "first_over_steady": float(x[0] / steady),
            "steady_from_query": settled if settled <= len(x) else None}


@section("cold-start", "Cold start: the first queries of a fresh session", order=75,
         note=f"No warm-up: every query from the first is timed in order. steady = median of the second half; "
              f"steady from = the query after which every query stays within {STEADY_WITHIN:.0%} of it "
              f"(empty: never settled).")
def cold_start_table(df: pd.DataFrame) -> pd.DataFrame | None:
    rows = []
    for _, row in df.iterrows():
        rec = row["record"]
        if rec.config.scenario.name != "cold-start" or rec.status != "ok":
            continue
        item = {k: row[k] for k in ("machine", "model", "backend", "device", "variant", "batch", "seq")}
        rows.append({**item, **cold_start_figures(rec.metrics.samples_ms), "queries": len(rec.metrics.samples_ms)})
    return drop_single_machine(pd.DataFrame(rows)) if rows else None
