"""Claim checks that read the records: what quantization, pruning and distillation cut from inference cost
within the quality bound, and how much memory a report's model would need at the bytes per parameter each
quantized variant measured here. Both are the inference analog of the reports' claims, and say so."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field

from ..analysis.matching import teacher_of
from . import Assessment, Evidence, Strict, check, from_parts

NO_RECORDS = "no records given (pass results directories)"


def _point(row) -> str:
    return f"{row['variant']} ({row['backend']}) on {row['model']} b{row['batch']} s{row['seq']}"


def _machine(machine: str, ev: Evidence) -> str:
    return f"{machine} (this machine)" if machine == ev.this_machine else machine


def _kinds(row) -> set[str]:
    return {t.get("kind") for t in row["record"].provenance.transforms}


class CostCutParams(Strict):
    low: float = Field(0.30, gt=0, lt=1)
    high: float = Field(0.50, gt=0, lt=1)
    kinds: list[str] = Field(["quantization", "pruning"], min_length=1,
                             description="transform kinds that count; a variant with several is judged as their mix")


def transform_cuts(df: pd.DataFrame, kinds: list[str]) -> list[dict]:
    """Every ok point whose transforms include a counted kind, with its speedup over the fp32 baseline."""
    rows = []
    for _, row in df[(df["status"] == "ok") & df["speedup_p50"].notna()].iterrows():
        counted = sorted(_kinds(row) & set(kinds))
        if counted:
            within = isinstance(row["quality_ok"], (bool, np.bool_)) and bool(row["quality_ok"])
            rows.append({"machine": row["machine"], "technique": "+".join(counted), "point": _point(row),
                         "speedup": row["speedup_p50"], "within": within})
    return rows


def distillation_cuts(df: pd.DataFrame) -> list[dict]:
    """Every ok student against its teacher at the same shape, backend and variant. Within the bound: both
    real weights and student/teacher perplexity within the student's ppl_ratio_max (encoders share no metric)."""
    ok = df[df["status"] == "ok"]
    rows = []
    for _, s in ok[ok["teacher"].notna()].iterrows():
        t = teacher_of(ok, s)
        if t is None or not s["p50_ms"]:
            continue
        bound = s["record"].config.quality.ppl_ratio_max
        ratio = s["perplexity"] / t["perplexity"] if pd.notna(s["perplexity"]) and pd.notna(t["perplexity"]) else None
        within = s["weights"] == t["weights"] == "real" and ratio is not None and ratio <= bound
        rows.append({"machine": s["machine"], "technique": "distillation", "speedup": t["p50_ms"] / s["p50_ms"],
                     "point": f"{s['model']} vs {s['teacher']} ({s['variant']} b{s['batch']} s{s['seq']})",
                     "within": within})
    return rows


@check("inference-cost-cut", CostCutParams, uses_records=True)
def inference_cost_cut(p: CostCutParams, ev: Evidence) -> Assessment:
    """Per machine and technique, the best cost cut (1 - 1/speedup at the same shape) within the quality
    bound; a technique holds where that reaches the claim's low end."""
    if ev.frame.empty:
        return Assessment("not checkable here", NO_RECORDS)
    rows = transform_cuts(ev.frame, p.kinds) + distillation_cuts(ev.frame)
    if not rows:
        return Assessment("not checkable here", "the records hold no quantized, pruned or distilled point with a "
                          "baseline at the same shape (fp32 PyTorch, or the teacher)")
    parts, lines = [], []
    for (machine, technique), group in pd.DataFrame(rows).groupby(["machine", "technique"], sort=True):
        within = group[group["within"]]
        left_out = len(group) - len(within)
        if within.empty:
            parts.append(False)
            lines.append(f"{_machine(machine, ev)}: {technique}: no point within the quality bound "
                         f"({left_out} break it or have no meaningful quality)")
            continue
        best = within.loc[within["speedup"].idxmax()]
        cut = 1 - 1 / best["speedup"]
        parts.append(cut >= p.low)
        beyond = " (beyond the claimed range)" if cut > p.high else ""
        lines.append(f"{_machine(machine, ev)}: {technique}: best {cut:.0%}{beyond} ({best['point']}, "
                     f"{best['speedup']:.2f}x); {len(within)} within the bound, {left_out} left out")
    reason = (f"inference analog of a training-cost claim: cost cut = 1 - 1/speedup at the same shape and machine "
              "(against fp32 PyTorch, so a change of backend counts too; distillation: against the teacher); a "
              f"technique holds on a machine where its best point within the quality bound cuts at least {p.low:.0%}")
    return Assessment(from_parts(parts), reason, records="; ".join(lines))


class MemoryParams(Strict):
    model: str
    claimed_gib: float = Field(gt=0)
    quantized_parameters: float = Field(gt=0, description="parameters the model's own quantization covers")
    kept_parameters: float = Field(0, ge=0, description="parameters left unquantized")
    kept_bytes_per_parameter: float = Field(2, gt=0)
    weight_bits: float = Field(gt=0, description="the bit width the claimed figure was measured at")
    parameters_source: str = Field(min_length=5)


def quantized_sizes(df: pd.DataFrame) -> pd.DataFrame:
    """Bytes per parameter of every quantized variant: its weights (exported file for ONNX Runtime, weights
    in memory otherwise) over the model's parameter count, once per (model, backend, variant)."""
    rows = []
    for _, row in df[df["status"] == "ok"].iterrows():
        params = getattr(row["record"].provenance, "parameters", None)
        if "quantization" in _kinds(row) and params and row["size_bytes"]:
            rows.append({"model": row["model"], "backend": row["backend"], "variant": row["variant"],
                         "bytes_per_parameter": row["size_bytes"] / params})
    out = pd.DataFrame(rows, columns=["model", "backend", "variant", "bytes_per_parameter"])
    return out.drop_duplicates(["model", "backend", "variant"]).sort_values("bytes_per_parameter", kind="stable")


@check("projected-weight-memory", MemoryParams, uses_records=True)
def projected_weight_memory(p: MemoryParams, ev: Evidence) -> Assessment:
    """The report's model at each measured bytes per parameter, beside the claimed memory (a projection)."""
    if ev.frame.empty:
        return Assessment("not checkable here", NO_RECORDS)
    sizes = quantized_sizes(ev.frame)
    if sizes.empty:
        return Assessment("not checkable here", "the records hold no quantized variant with its weight bytes and "
                          "parameter count")
    kept = p.kept_parameters * p.kept_bytes_per_parameter
    sizes["projected_gib"] = (p.quantized_parameters * sizes["bytes_per_parameter"] + kept) / 2**30
    records = "; ".join(f"{r.variant} ({r.backend}, {r.model}) {r.bytes_per_parameter:.2f} B/param -> "
                        f"{r.projected_gib:.1f} GiB projected" for r in sizes.itertuples())
    best = sizes.iloc[0]
    basis = (f"projected weights of {p.model} ({p.quantized_parameters / 1e9:g}B parameters at the measured bytes "
             f"per parameter + {p.kept_parameters / 1e9:g}B kept at {p.kept_bytes_per_parameter:g} B; "
             f"{p.parameters_source}) against the claimed {p.claimed_gib:g} GiB; weights only: activations, KV "
             "cache and runtime are not counted, so a projection is a lower bound on the memory needed")
    if best["projected_gib"] <= p.claimed_gib:
        verdict = "holds"
    elif 8 * best["bytes_per_parameter"] > 1.25 * p.weight_bits:
        verdict = "not checkable here"
        basis += f"; no variant measured here is as small as {p.weight_bits:g}-bit weights"
    else:
        verdict = "does not hold"
    return Assessment(verdict, f"smallest: {best['variant']} at {best['projected_gib']:.1f} GiB; {basis}",
                      records=records)

