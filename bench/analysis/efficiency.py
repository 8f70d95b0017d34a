"""The efficiency figures of every measured point, per timed phase (forward; a generation's prefill and decode):
work counted from the model config, achieved FLOP/s and bytes/s, position against the machine's measured
ceilings, energy and cost. The report's efficiency and projection sections and the exports read them."""

from __future__ import annotations

import pandas as pd

from ..hardware.cost import cost_per_million
from ..hardware.roofline import efficiency


def phases(rec) -> list[dict]:
    """(phase, flops, bytes, seconds, items, tokens) of each timed phase of a record: the work its scenario declared
    for the phase, set against the seconds the scenario measured for one occurrence of it."""
    m, work = rec.metrics, rec.metrics.work
    if not work:
        return []
    return [{"phase": ph.name, "flops": ph.flops, "bytes": ph.bytes, "seconds": m.phase_seconds[ph.name],
             "items": ph.items, "tokens": ph.tokens}
            for ph in work.phases if m.phase_seconds.get(ph.name)]


def ceilings(peaks: dict, device: str, precision: str) -> tuple[float | None, float | None]:
    """(GEMM peak FLOP/s at `precision`, copy bandwidth in bytes/s) of `device` from `bench peak`'s figures."""
    dev = (peaks.get("devices") or {}).get(device) or {}
    gemm = (dev.get("gemm") or {}).get(precision) or {}
    return gemm.get("value"), (dev.get("bandwidth") or {}).get("value")


def efficiency_rows(df: pd.DataFrame) -> list[dict]:
    """One row per ok point and timed phase: work, time, achieved rates, position against the machine's measured
    ceilings (`df.attrs["peaks"]`), energy and, where the machine has a price (`df.attrs["prices"]`), cost."""
    rows = []
    for _, row in df[df["status"] == "ok"].iterrows():
        rec = row["record"]
        price = df.attrs.get("prices", {}).get(row["machine"])
        peaks = df.attrs.get("peaks", {}).get(row["machine"], {})
        precision = rec.metrics.work.compute_precision if rec.metrics.work else rec.config.variant.precision
        energy = rec.metrics.energy
        for ph in phases(rec):
            peak_flops, peak_bw = ceilings(peaks, row["device"], precision)
            item = {"machine": row["machine"], "model": row["model"], "weights": row["weights"],
                    "backend": row["backend"], "device": row["device"], "variant": row["variant"],
                    "batch": row["batch"], "seq": row["seq"],
                    "phase": ph["phase"], "precision": precision, "gflop": ph["flops"] / 1e9,
                    "mbytes": ph["bytes"] / 1e6, "intensity": ph["flops"] / ph["bytes"],
                    "ms": ph["seconds"] * 1e3, "achieved_gflops": ph["flops"] / ph["seconds"] / 1e9,
                    "achieved_gbps": ph["bytes"] / ph["seconds"] / 1e9,
                    "items_per_s": ph["items"] / ph["seconds"], "tokens_per_s": ph["tokens"] / ph["seconds"]}
            if peak_flops and peak_bw:
                eff = efficiency(ph["flops"], ph["bytes"], ph["seconds"], peak_flops, peak_bw)
                item.update({"pct_peak_flops": eff["pct_of_peak_flops"], "pct_peak_bw": eff["pct_of_peak_bw"],
                             "pct_roofline": eff["pct_of_roofline"], "bound": eff["bound"]})
            else:
                item["bound"] = "no measured peaks (run `bench peak`)"
            item["energy"] = energy.status if energy else "unavailable"
            item["j_per_inference"] = energy.joules_per_inference if energy else None
            if price is not None:
                item["usd_per_m_inferences"] = cost_per_million(price, item["items_per_s"])
                item["usd_per_m_tokens"] = cost_per_million(price, item["tokens_per_s"])
            item["_flops"], item["_bytes"], item["_seconds"] = ph["flops"], ph["bytes"], ph["seconds"]
            rows.append(item)
    return rows
