"""The answer a reader wants first: which variant to use per model and shape, as a table and in sentences.

Per model and shape (machine, device, scenario, batch, sequence length): the best variant within the quality
bound. Best = the highest speedup over the fp32 PyTorch point of the same shape and machine (and suite:
analysis/frame.py), preferring a variant that is significantly faster (the rule of bench/compare/stats.py) over one
whose estimate is higher but not significant. Where quality cannot decide (random weights, quality not measured)
the answer says so and ranks on speed alone; where no variant meets the bound, or none is significantly faster, it
keeps fp32 (naming the closest variant only as information).
"""

from __future__ import annotations

import math

import pandas as pd

from ..analysis.frame import SHAPE, with_interval

WITHIN = "within bound"
NONE_FASTER = "none significantly faster: keep fp32"
NOTHING_MEETS = "nothing meets the quality bound"
RANDOM = "speed only: random weights"
UNMEASURED = "speed only: quality not measured"
NO_BASELINE = "no fp32 baseline"
ONLY_BASELINE = "only the baseline measured"
ALL_FAILED = "every point failed"
BEST_COLUMNS = [*SHAPE, "weights", "answer", "variant", "backend", "p50_ms", "baseline_p50_ms",
                *with_interval("speedup_p50"), "processes", "size_ratio", "quality", "flags", "closest", "excluded"]


def quality_state(row) -> str:
    """within, breaks, not meaningful, error or not measured: what a point's quality says."""
    verdict = row["quality_verdict"]
    if not isinstance(verdict, str):
        return "not measured"
    return {"within bound": "within", "breaks bound": "breaks", "error": "error"}.get(verdict, "not meaningful")


def bound_value(row) -> tuple[str, float | None, str]:
    """(metric, the point's value of it, the bound as text) from the record's quality bound."""
    quality = row["record"].metrics.quality
    bound = quality.bound if quality else None
    if bound is None:
        return "", None, ""
    limit = f">= {bound.min:g}" if bound.min is not None else f"<= {bound.max:g}"
    return bound.metric, getattr(quality, bound.metric, None), limit


def quality_text(row) -> str:
    """A point's quality in words: the bound's metric, its value, and the bound."""
    state = quality_state(row)
    if state == "not measured":
        return "not measured"
    if state == "not meaningful":
        return "not meaningful (random weights)"
    if state == "error":
        return "quality check failed"
    metric, value, limit = bound_value(row)
    if value is None:
        return row["quality_verdict"]
    return f"{metric} {value:.5g} ({'within' if state == 'within' else 'BREAKS'} {limit})"


def _ranked(rows: pd.DataFrame) -> pd.DataFrame:
    """Best first: significantly faster before not, then the higher speedup."""
    return rows.assign(_faster=rows["speedup_p50_sig"] == "faster").sort_values(
        ["_faster", "speedup_p50"], ascending=False, kind="stable").drop(columns="_faster")


def _excluded(others: pd.DataFrame, pick_speedup: float) -> str:
    """The variants faster than the pick that the quality bound ruled out, fastest first."""
    ruled_out = [quality_state(r) in ("breaks", "error") and r["speedup_p50"] > pick_speedup
                 for _, r in others.iterrows()]
    return "; ".join(f"{r['variant']} {r['speedup_p50']:.2f}x ({quality_text(r)})"
                     for _, r in _ranked(others[ruled_out]).iterrows())


def _baseline_of(rows: pd.DataFrame, row) -> pd.Series:
    """The fp32 point a row of this shape is measured against (its own suite's: frame.attach_baseline)."""
    return rows[rows["point_id"] == row["baseline_point"]].iloc[0]


def _answer(rows: pd.DataFrame) -> tuple[str, pd.Series | None, pd.Series | None, str]:
    """(answer, the row it names, the closest variant where none is significantly faster and fp32 is kept,
    what the quality bound excluded) for the points of one shape."""
    ok = rows[(rows["status"] == "ok") & rows["p50_ms"].notna()]
    if ok.empty:
        return ALL_FAILED, None, None, ""
    base = ok[ok["speedup_p50_sig"] == "baseline"]
    others = ok[(ok["speedup_p50_sig"] != "baseline") & ok["speedup_p50"].notna()]
    if base.empty:
        return NO_BASELINE, ok.sort_values("p50_ms", kind="stable").iloc[0], None, ""
    if others.empty:
        return ONLY_BASELINE, base.iloc[0], None, ""
    states = [quality_state(r) for _, r in others.iterrows()]
    within = others[[s == "within" for s in states]]
    if not within.empty:
        best = _ranked(within).iloc[0]
        if best["speedup_p50_sig"] == "faster":
            return WITHIN, best, None, _excluded(others, best["speedup_p50"])
        return NONE_FASTER, _baseline_of(ok, best), best, _excluded(others, 1.0)
    if any(s in ("breaks", "error") for s in states):
        return NOTHING_MEETS, _baseline_of(ok, _ranked(others).iloc[0]), None, _excluded(others, 1.0)
    answer = RANDOM if all(s == "not meaningful" for s in states) else UNMEASURED
    best = _ranked(others).iloc[0]
    if best["speedup_p50_sig"] == "faster":
        return answer, best, None, ""
    return answer, _baseline_of(ok, best), best, ""


def _closest(row) -> str:
    """The variant nearest to fp32 where none is significantly faster: information, never the pick."""
    speed = speed_phrase(row["speedup_p50"], row["speedup_p50_ci_low"], row["speedup_p50_ci_high"],
                         row["speedup_p50_sig"])
    quality = f", quality {quality_text(row)}" if quality_state(row) == "within" else ""
    return f"{row['variant']}: {speed}{quality}"


def best_variants(df: pd.DataFrame) -> pd.DataFrame | None:
    """One row per (machine, model, shape): the answer, the variant it names (fp32 where none is significantly
    faster), its speedup with the interval, size ratio, quality and flags, the closest variant where fp32 is
    kept, and which faster variants the bound excluded. Serving points are not here: their answer is a capacity
    at the SLO (report/serving.py)."""
    rows = []
    for key, group in df[~df["serving"]].groupby(SHAPE, sort=True, dropna=False):
        answer, pick, closest, excluded = _answer(group)
        row = {**dict(zip(SHAPE, key)), "weights": group["weights"].iloc[0], "answer": answer, "excluded": excluded,
               "closest": _closest(closest) if closest is not None else "", "baseline_p50_ms": math.nan}
        if pick is not None:
            row.update({k: pick[k] for k in ("variant", "backend", "p50_ms", *with_interval("speedup_p50"),
                                             "processes", "size_ratio")})
            row.update(quality=quality_text(pick),
                       flags="; ".join(f for f in pick["flags"].split("; ") if f and f != "random weights"))
            if isinstance(pick["baseline_point"], str):
                row["baseline_p50_ms"] = _baseline_of(group, pick)["p50_ms"]
        rows.append(row)
    if not rows:
        return None
    table = pd.DataFrame(rows).reindex(columns=BEST_COLUMNS)
    return table.drop(columns="target") if (table["target"].fillna("") == "").all() else table


def speed_phrase(value, low, high, sig, than: str = "fp32") -> str:
    """`2.95x faster than fp32 [95% CI 2.85, 3.01]`, or what the test allows one to say instead."""
    interval = f" [95% CI {low:.2f}, {high:.2f}]" if pd.notna(low) and pd.notna(high) else ""
    said = {"faster": f"faster than {than}", "slower": f"the speed of {than} (significantly slower)",
            "n.s.": f"the speed of {than} (not significantly different)"}.get(sig, f"the speed of {than} (untested)")
    return f"{value:.2f}x {said}{interval}"


def headline(row) -> str:
    """The answer for one shape in a sentence: variant, speedup with its interval, size, quality, flags."""
    answer = row["answer"]
    if answer == ALL_FAILED:
        return "every point at this shape failed (see the comparison table)"
    flags = f" Flags: {row['flags']}." if row["flags"] else ""
    if answer == NO_BASELINE:
        return f"No fp32 PyTorch baseline at this shape, so no speedup; fastest: {row['variant']} " \
               f"(p50 {row['p50_ms']:.3g} ms).{flags}"
    if answer == ONLY_BASELINE:
        return f"Only the fp32 baseline was measured (p50 {row['p50_ms']:.3g} ms).{flags}"
    if answer == NOTHING_MEETS:
        return f"Nothing meets the quality bound: keep {row['variant']}. Excluded: {row['excluded']}."
    excluded = f" Faster but over the bound: {row['excluded']}." if row["excluded"] else ""
    if row["closest"]:
        within = " within the quality bound" if answer == NONE_FASTER else ""
        said = f"No variant is significantly faster than fp32{within}: keep fp32. Closest: {row['closest']}."
        if answer in (RANDOM, UNMEASURED):
            return f"{said} Speed only: {_speed_only_reason(answer)}.{flags}"
        return f"{said}{flags}{excluded}"
    speed = speed_phrase(row["speedup_p50"], row["speedup_p50_ci_low"], row["speedup_p50_ci_high"],
                         row["speedup_p50_sig"])
    size = f", {row['size_ratio']:.2f}x the size" if pd.notna(row["size_ratio"]) else ""
    if answer in (RANDOM, UNMEASURED):
        return f"{row['variant']}: {speed}{size}. Speed only: {_speed_only_reason(answer)}.{flags}"
    return f"{row['variant']}: {speed}{size}, quality {row['quality']}.{flags}{excluded}"


def _speed_only_reason(answer: str) -> str:
    return "quality is not meaningful with random weights" if answer == RANDOM else "quality was not measured"


def shape_label(row, device: bool = False) -> str:
    """`single-stream b8 s128` (with the device where a report measured several)."""
    return f"{row['scenario']} b{row['batch']} s{row['seq']}" + (f" {row['device']}" if device else "")
