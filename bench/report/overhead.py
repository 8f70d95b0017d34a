"""Time to result: where each point's wall time went, and how much of it was measurement."""

from __future__ import annotations

import pandas as pd

from . import drop_single_machine, section

PHASES = ("start_s", "load_s", "reference_s", "transform_s", "scenario_s", "quality_s")


@section("overhead", "Time to result: where each point's wall time went", order=90,
         note="start = process start until the point runs (forked from a server that imported torch once); load = "
              "weights or seeded random init; reference = the fp32 quality reference (computed once per model, then "
              "read from the cache); transform = transforms, precision, export, session; scenario = warm-up and timed "
              "traffic; quality = the variant's quality outputs and metrics. overhead = 1 - scenario / wall.")
def overhead_table(df: pd.DataFrame) -> pd.DataFrame | None:
    rows = []
    for _, row in df.iterrows():
        rec = row["record"]
        if rec.phases is None or rec.phases.scenario_s is None:
            continue
        item = {k: row[k] for k in ("machine", "model", "backend", "variant", "scenario", "batch", "seq")}
        item.update({p: getattr(rec.phases, p) for p in PHASES})
        item.update({"wall_s": rec.wall_s, "overhead": rec.phases.overhead_fraction})
        rows.append(item)
    if not rows:
        return None
    table = pd.DataFrame(rows)
    total = {"model": "all points", **{p: table[p].sum() for p in (*PHASES, "wall_s")}}
    total["overhead"] = 1 - total["scenario_s"] / total["wall_s"] if total["wall_s"] else None
    return drop_single_machine(pd.concat([table, pd.DataFrame([total])], ignore_index=True))
