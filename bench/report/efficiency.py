"""Hardware efficiency: roofline position of every measured point against this machine's measured
ceilings, energy, cost, and roofline projections onto the chip catalog (labelled `projected`)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..hardware.catalog import load_catalog
from ..hardware.cost import cost_per_million
from ..hardware.roofline import efficiency, plot_roofline, project
from . import drop_single_machine, section

def phases(rec) -> list[dict]:
    """(phase, flops, bytes, seconds per query, items per query) for each timed phase of a record."""
    m, work = rec.metrics, rec.metrics.work
    if not work:
        return []
    batch, seq = rec.config.batch_size, rec.config.seq_len
    gen = m.generation
    if gen:
        # the prompt pass computes the last position's logits only; a record made before `prefill` was counted
        # has only the full forward, which charges the LM head per prompt token, so it gets no prefill row
        out = []
        if work.prefill:
            out.append({"phase": "prefill", "flops": work.prefill.flops, "bytes": work.prefill.bytes,
                        "seconds": gen.ttft.p50_ms / 1e3, "items": batch, "tokens": batch * seq})
        if work.decode_step and gen.tpot:
            out.append({"phase": "decode", "flops": work.decode_step.flops, "bytes": work.decode_step.bytes,
                        "seconds": gen.tpot.p50_ms / 1e3, "items": batch, "tokens": batch})
        return out
    scenario = rec.config.scenario.name
    if scenario == "single-stream" and m.latency and m.latency.p50_ms:
        seconds = m.latency.p50_ms / 1e3
    elif scenario == "offline" and m.throughput:
        seconds = batch / m.throughput.samples_per_s
    else:
        return []
    return [{"phase": "forward", "flops": work.flops, "bytes": work.bytes, "seconds": seconds,
             "items": batch, "tokens": batch * seq}]


def _ceilings(peaks: dict, device: str, precision: str) -> tuple[float | None, float | None]:
    dev = (peaks.get("devices") or {}).get(device) or {}
    gemm = (dev.get("gemm") or {}).get(precision) or {}
    return gemm.get("value"), (dev.get("bandwidth") or {}).get("value")


def efficiency_rows(df: pd.DataFrame) -> list[dict]:
    rows = []
    for _, row in df[df["status"] == "ok"].iterrows():
        rec = row["record"]
        price = df.attrs.get("prices", {}).get(row["machine"])
        peaks = df.attrs.get("peaks", {}).get(row["machine"], {})
        precision = rec.metrics.work.compute_precision if rec.metrics.work else rec.config.variant.precision
        energy = rec.metrics.energy
        for ph in phases(rec):
            peak_flops, peak_bw = _ceilings(peaks, row["device"], precision)
            item = {"machine": row["machine"], "model": row["model"], "weights": row["weights"], "backend": row["backend"],
                    "device": row["device"], "variant": row["variant"], "batch": row["batch"], "seq": row["seq"],
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


def _plot(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    rows = efficiency_rows(df)
    written = []
    several = len(df.attrs.get("peaks", {})) > 1
    for machine, peaks in df.attrs.get("peaks", {}).items():
        for device in sorted({r["device"] for r in rows if r["machine"] == machine}):
            peak_flops, peak_bw = _ceilings(peaks, device, "fp32")
            points = [{"label": f"{r['model']} {r['variant']} b{r['batch']} {r['phase']}", "intensity": r["intensity"],
                       "achieved_flops": r["achieved_gflops"] * 1e9}
                      for r in rows if r["device"] == device and r["machine"] == machine]
            if not (peak_flops and peak_bw and points):
                continue
            path = out_dir / (f"roofline-{device}-{machine[:24]}.png" if several else f"roofline-{device}.png")
            plot_roofline(points, peak_flops, peak_bw, path, f"Roofline ({machine}, {device}, fp32 ceiling)")
            written.append(path)
    return written


@section("efficiency", "Efficiency against this machine's measured ceilings (roofline)", order=50, plot=_plot,
         note="FLOPs and bytes are counted analytically from the model config (2 FLOPs per multiply-add, full "
              "attention matrix; a generation's prefill runs the LM head on the last position only; bytes are a "
              "lower bound: weights once, less embedding tables a query only gathers rows from (a table tied to the "
              "LM head is read whole and stays in), activations once per layer, KV cache once per decode step). "
              "Ceilings are this machine's measured GEMM peak for the point's compute precision and its measured "
              "copy bandwidth (`bench peak`). Energy is `unavailable` unless a counter could be read.")
def efficiency_table(df: pd.DataFrame) -> pd.DataFrame | None:
    rows = efficiency_rows(df)
    if not rows:
        return None
    out = pd.DataFrame(rows).drop(columns=["_flops", "_bytes", "_seconds"])
    return drop_single_machine(out.dropna(axis=1, how="all"))


@section("projection", "Projected throughput on catalog chips (roofline bound, NOT measured)", order=60,
         note="projected = batch / max(FLOPs / chip peak at the point's precision, bytes / chip bandwidth), from the "
              "vendor figures in bench/hardware/chips (each with its source). It is an ideal upper bound that ignores "
              "kernel efficiency, launch overheads and software; the ratio column divides it by this machine's "
              "measured rate. Empty: the vendor publishes no figure for that precision.")
def projection_table(df: pd.DataFrame) -> pd.DataFrame | None:
    rows = efficiency_rows(df)
    if not rows:
        return None
    chips = load_catalog()
    out = []
    for r in rows:
        item = {k: r[k] for k in ("machine", "model", "variant", "device", "batch", "seq", "phase", "precision")}
        item["measured_items_per_s"] = r["items_per_s"]
        for chip in chips:
            seconds = project(r["_flops"], r["_bytes"], chip.peak_flops(r["precision"]), chip.bandwidth())
            item[f"{chip.name.split(' (')[0]} projected x"] = (r["_seconds"] / seconds) if seconds else math.nan
        out.append(item)
    return drop_single_machine(pd.DataFrame(out))
