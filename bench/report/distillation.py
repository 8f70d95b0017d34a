"""Teachers against their distilled students: speed, size and, where both have real weights, quality."""

from __future__ import annotations

import math

import pandas as pd

from ..analysis.frame import SIGNIFICANCE
from ..analysis.matching import teacher_of
from ..compare.stats import compare
from . import drop_single_machine, section


def _quality(student, teacher) -> tuple[str, float]:
    if student["weights"] != "real" or teacher["weights"] != "real":
        return "not comparable: random weights", math.nan
    if pd.notna(student["perplexity"]) and pd.notna(teacher["perplexity"]):
        return "perplexity ratio (student / teacher)", student["perplexity"] / teacher["perplexity"]
    return "no shared label-free metric (encoders embed into different spaces)", math.nan


@section("distillation", "Distillation: students against their teachers", order=40,
         note="speed ratio = teacher p50 / student p50 at the same shape, backend and variant; size ratio = "
              "student / teacher bytes. Quality needs real weights on both sides. " + SIGNIFICANCE)
def distillation(df: pd.DataFrame) -> pd.DataFrame | None:
    students = df[df["teacher"].notna()]
    if students.empty:
        return None
    rows = []
    for _, s in students.iterrows():
        t = teacher_of(df, s)
        ok = t is not None and s["status"] == "ok" and t["status"] == "ok"
        basis, value = _quality(s, t) if ok else ("", math.nan)
        cmp = compare(t["runs"], s["runs"]) if ok else None
        speed, low, high = cmp.speedup() if cmp else (t["p50_ms"] / s["p50_ms"] if ok else math.nan, math.nan, math.nan)
        rows.append({
            "machine": s["machine"], "student": s["model"], "student_weights": s["weights"], "teacher": s["teacher"],
            "teacher_weights": t["weights"] if t is not None else "", "device": s["device"], "batch": s["batch"],
            "seq": s["seq"], "variant": s["variant"],
            "student_p50_ms": s["p50_ms"], "teacher_p50_ms": t["p50_ms"] if t is not None else math.nan,
            "speed_ratio": speed, "speed_ratio_ci_low": low, "speed_ratio_ci_high": high,
            "speed_ratio_sig": cmp.verdict if cmp else ("untested" if ok else ""),
            "processes": cmp.processes if cmp else "",
            "size_ratio": s["size_bytes"] / t["size_bytes"] if ok and t["size_bytes"] else math.nan,
            "quality_basis": basis if t is not None else "teacher not measured at this shape",
            "quality_ratio": value,
        })
    return drop_single_machine(pd.DataFrame(rows))
