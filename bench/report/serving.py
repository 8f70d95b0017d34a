"""Serving: the answer (capacity at the SLO per variant, engine and machine, with its interval across processes),
the machines side by side by capacity, every run's metrics (vLLM's definitions, printed beside each table), the
throughput-latency curve and the Pareto frontier of throughput per chip against the speed each user sees; and the
`generate` scenario's table."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..analysis.serving import UNITS, capacity_estimate, failed_checks, load_text, point_capacity, slo_text
from ..records.serving import ServingMetrics
from . import drop_single_machine, section
from .charts import pareto_front

DEFINITIONS = ("Metrics (vLLM `bench serve` definitions): TTFT = first output token - arrival (open loop: the "
               "scheduled arrival, so queueing counts; closed loop: the send); TPOT = (E2E - TTFT) / (output tokens "
               "- 1) per request; ITL = gaps between consecutive token events, pooled; E2E = completion - arrival; "
               "requests/s and output tokens/s = successful requests (their tokens) / (last completion - first "
               "arrival); goodput = requests within every SLO bound / the same duration (failed ones never count); "
               "tokens/s per user = mean of (output - 1) / (E2E - TTFT). failed = failed plus unserved requests, "
               "never dropped. valid = the one rule (bench/validity.py: MLPerf early stopping at 99% confidence): "
               "enough requests for the SLO's highest percentile, the minimum duration, the SLO's conservative "
               "percentile estimate within its bound, every request served, none failed.")
CAPACITY = ("capacity = the highest load (arrival rate, or users) whose run is valid with every SLO met: a capacity "
            "search (bisection), a sweep's highest valid rate, or, without either, the point's own load where its "
            "run was valid (`>=`: a lower bound). Across processes of a point (`bench run --repeat N`): the mean and "
            "its 95% Student-t interval; `n=1` = one process, no interval. A serving point is never answered with a "
            "latency ratio: a run past its capacity measures its queue.")


def _serving_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["serving"]] if "serving" in df else df.iloc[0:0]


def _figures(m: ServingMetrics) -> dict:
    """A run's figures as table columns."""
    out = {"load": load_text(m), "requests": m.requests, "failed": m.failed_requests,
           "requests_per_s": m.requests_per_s, "output_tok_s": m.output_tokens_per_s,
           "goodput_per_s": m.goodput_requests_per_s, "tok_s_per_user": m.tokens_per_s_per_user}
    for metric in ("ttft", "tpot", "itl", "e2e"):
        distribution = getattr(m, f"{metric}_ms")
        out[f"{metric}_p50_ms"], out[f"{metric}_p99_ms"] = distribution.p50, distribution.p99
    return out


def _point(row) -> dict:
    return {"machine": row["machine"], "model": row["model"], "backend": row["backend"], "variant": row["variant"],
            "engine": engine_of(row), "scenario": row["scenario"]}


def engine_of(row) -> str:
    rec = row["record"]
    if rec.metrics.serving is not None:
        return rec.metrics.serving.engine
    return rec.config.scenario.options.get("engine", "static")


def _tidy(rows: list[dict]) -> pd.DataFrame | None:
    if not rows:
        return None
    return drop_single_machine(pd.DataFrame(rows).dropna(axis=1, how="all"))


# --- the answer -------------------------------------------------------------------------------------------

def capacity_rows(df: pd.DataFrame) -> list[dict]:
    """One row per serving point: its capacity at the SLO with the interval across its processes."""
    rows = []
    for _, row in _serving_rows(df).iterrows():
        rec = row["record"]
        item = {**_point(row), "slo": slo_text(rec), "status": row["status"]}
        estimate = capacity_estimate(row["process_records"]) if row["status"] == "ok" else None
        if estimate is not None:
            at = estimate.metrics
            item.update({"capacity": estimate.value, "capacity_ci_low": estimate.low,
                         "capacity_ci_high": estimate.high, "unit": UNITS[estimate.parameter],
                         "processes": estimate.processes, "note": estimate.note,
                         "output_tok_s_at_capacity": at.output_tokens_per_s if at else None,
                         "requests_per_s_at_capacity": at.requests_per_s if at else None,
                         "tok_s_per_user_at_capacity": at.tokens_per_s_per_user if at else None})
        elif row["status"] == "ok":
            item["note"] = "no capacity: a burst's load is everything at once"
        else:
            item["note"] = row["error"]
        rows.append(item)
    return rows


@section("serving-answer", "The answer for serving: capacity at the SLO per variant, engine and machine", order=6,
         plot=lambda df, out: throughput_latency_chart(df, out) + pareto_chart(df, out),
         note=CAPACITY + " " + DEFINITIONS)
def serving_answer(df: pd.DataFrame) -> pd.DataFrame | None:
    return _tidy(capacity_rows(df))


# --- the machines ---------------------------------------------------------------------------------------------

KEY = ["model", "backend", "variant", "engine", "scenario", "slo"]


def _best_machine(group: pd.DataFrame) -> dict:
    """The machine with the highest capacity, and whether it is significantly higher than the runner-up's
    (Welch's t on the processes' capacities, p < 0.05, both sides with 2 or more)."""
    ranked = group.sort_values("capacity", ascending=False, kind="stable")
    best = ranked.iloc[0]
    out = {"best": best["machine"], "runner_up": "", "verdict": "only one machine"}
    if len(ranked) < 2:
        return out
    second = ranked.iloc[1]
    out["runner_up"] = second["machine"]
    a, b = best["values"], second["values"]
    if len(a) < 2 or len(b) < 2:
        out["verdict"] = "untested (n=1 on a side: bench run --repeat 3)"
        return out
    p = float(sps.ttest_ind(a, b, equal_var=False).pvalue) if np.std(a) + np.std(b) > 0 else 0.0
    out["verdict"] = "higher" if p < 0.05 and np.mean(a) > np.mean(b) else "n.s."
    return out


@section("serving-hardware", "Hardware for serving: capacity at the SLO on each machine", order=16,
         note="One column group per machine: the capacity at the SLO (mean over processes, 95% interval) and the "
              "output tokens/s at it. best = the highest capacity; verdict: `higher` where Welch's t on the "
              "processes' capacities says so (p < 0.05), `n.s.` where it does not. " + CAPACITY)
def serving_hardware(df: pd.DataFrame) -> pd.DataFrame | None:
    if df["machine"].nunique() < 2:
        return None
    rows = []
    for (_, row), item in zip(_serving_rows(df).iterrows(), capacity_rows(df)):
        if item.get("capacity") is None:
            continue
        values = [c.value for c in map(_capacity_of, row["process_records"]) if c is not None]
        rows.append({**item, "values": values})
    if not rows:
        return None
    found = pd.DataFrame(rows)
    if found["machine"].nunique() < 2:
        return None
    machines = sorted(found["machine"].unique())
    table = []
    for key, group in found.groupby(KEY, sort=True):
        item = dict(zip(KEY, key))
        for _, r in group.iterrows():
            item.update({f"{r['machine']} capacity": r["capacity"], f"{r['machine']} ci": _interval(r),
                         f"{r['machine']} output_tok_s": r["output_tok_s_at_capacity"]})
        table.append({**item, "unit": group["unit"].iloc[0], **_best_machine(group)})
    columns = KEY + [f"{m} {c}" for m in machines for c in ("capacity", "ci", "output_tok_s")] + \
        ["unit", "best", "runner_up", "verdict"]
    return pd.DataFrame(table).reindex(columns=columns).dropna(axis=1, how="all")


def _capacity_of(rec):
    found = point_capacity(rec)
    return found if found is not None and found.value is not None else None


def _interval(row) -> str:
    low, high = row["capacity_ci_low"], row["capacity_ci_high"]
    return f"[{low:.3g}, {high:.3g}]" if pd.notna(low) and pd.notna(high) else row["note"]


# --- every run ------------------------------------------------------------------------------------------

@section("serving", "Serving runs: throughput, latency, goodput and validity of each point's main run", order=80,
         note=DEFINITIONS + " padding waste = padded tokens / tokens computed, where the engine reports it.")
def serving_table(df: pd.DataFrame) -> pd.DataFrame | None:
    rows = []
    for _, row in _serving_rows(df).iterrows():
        rec = row["record"]
        item = {**_point(row), "status": row["status"], "slo": slo_text(rec)}
        m = rec.metrics
        if m.serving is not None:
            item.update(_figures(m.serving))
            item.update({"valid": m.verdict.valid if m.verdict else None, "failed_checks": failed_checks(rec),
                         "reasons": "; ".join(m.verdict.reasons) if m.verdict else "",
                         "padding_waste": m.padding.waste if m.padding else None})
        rows.append(item)
    return _tidy(rows)


def _runs(rec) -> list[tuple[str, ServingMetrics, bool, list[str]]]:
    """(which run, its metrics, valid, reasons) of every run of a point: its sweep's levels, its capacity
    probes, else its main run."""
    m = rec.metrics
    runs = [(f"sweep: {level.kind}", level.metrics, level.verdict.valid, level.verdict.reasons)
            for level in m.sweep or []]
    if m.capacity is not None and m.capacity.method == "bisection":
        runs += [("capacity probe", p.metrics, p.valid, p.reasons) for p in m.capacity.probes if p.metrics]
    if not runs and m.serving is not None:
        runs = [("main", m.serving, bool(m.verdict and m.verdict.valid), m.verdict.reasons if m.verdict else [])]
    return runs


@section("serving-levels", "Serving levels: every sweep level and capacity probe", order=81,
         note="Each run a sweep or a capacity search made, in the order it ran; `stopped` says why a run ended "
              "with requests unserved (over-saturated: its backlog outgrew the bound; or the deadline). "
              + DEFINITIONS)
def serving_levels(df: pd.DataFrame) -> pd.DataFrame | None:
    rows = []
    for _, row in _serving_rows(df[df["status"] == "ok"]).iterrows():
        rec = row["record"]
        if not rec.metrics.sweep and not (rec.metrics.capacity and rec.metrics.capacity.probes):
            continue
        for run, m, valid, reasons in _runs(rec):
            rows.append({**_point(row), "run": run, **_figures(m), "valid": valid, "stopped": m.stop_reason,
                         "reasons": "; ".join(reasons)})
    return _tidy(rows)


# --- charts ---------------------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curve_points(df: pd.DataFrame) -> list[dict]:
    """Every run of every ok serving point, labelled by the line it belongs to: one line per model, variant,
    engine, scenario (and machine, with several), over sweep levels, users points and capacity probes."""
    several = df["machine"].nunique() > 1
    points = []
    for _, row in _serving_rows(df[df["status"] == "ok"]).iterrows():
        rec = row["record"]
        on = f" on {row['machine']}" if several else ""
        label = f"{row['model']} {row['backend']}/{row['variant']} {engine_of(row)} ({rec.config.scenario.name}){on}"
        for _, m, valid, _ in _runs(rec):
            points.append({"label": label, "model": row["model"], "requests_per_s": m.requests_per_s, "output_tok_s": m.output_tokens_per_s,
                           "ttft_p99": m.ttft_ms.p99, "tpot_p99": m.tpot_ms.p99, "e2e_p99": m.e2e_ms.p99,
                           "per_user": m.tokens_per_s_per_user, "stopped": m.stop_reason is not None,
                           "valid": valid})
    return points


PANELS = [("tpot_p99", "output_tok_s", "p99 TPOT (ms)", "output tokens/s"),
          ("ttft_p99", "output_tok_s", "p99 TTFT (ms)", "output tokens/s"),
          ("e2e_p99", "requests_per_s", "p99 E2E (ms), embeddings", "requests/s")]


def throughput_latency_chart(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Output tokens/s against p99 TPOT and against p99 TTFT (embeddings: requests/s against p99 E2E), one line
    per variant, engine and machine; runs that stopped with requests unserved are crosses, off the line."""
    points = pd.DataFrame(curve_points(df))
    if points.empty:
        return []
    embeddings = points["ttft_p99"].isna()
    panels = [(x, y, xl, yl, points[embeddings if x == "e2e_p99" else ~embeddings]) for x, y, xl, yl in PANELS]
    panels = [p for p in panels if p[4][p[0]].notna().any()]
    if not panels:
        return []
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.6), squeeze=False)
    for ax, (x, y, x_label, y_label, rows) in zip(axes[0], panels):
        for label, line in rows.groupby("label", sort=True):
            line = line.sort_values("requests_per_s")
            kept, stopped = line[~line["stopped"] & line[x].notna()], line[line["stopped"] & line[x].notna()]
            drawn = ax.plot(kept[x], kept[y], "o-", label=label)
            if not stopped.empty:
                ax.plot(stopped[x], stopped[y], "x", color=drawn[0].get_color(), markersize=8)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
        ax.set_title(f"{y_label} against {x_label}", fontsize=9)
    lines = {label: handle for ax in axes[0] for handle, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(lines.values(), lines.keys(), fontsize=7, loc="lower center", ncol=min(3, len(lines)))
    fig.suptitle("Throughput against latency (x: stopped with requests unserved)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06 + 0.03 * math.ceil(len(lines) / 3), 1, 1))
    path = out_dir / "throughput-latency.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def pareto_chart(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """AIPerf's / InferenceMAX's chart, one per model: output tokens/s per chip against tokens/s per user, every run
    a point, one colour per variant, engine and machine, and the frontier no run of the model beats on both."""
    points = pd.DataFrame(curve_points(df))
    if points.empty:
        return []
    points = points[points["per_user"].notna() & ~points["stopped"]]
    plt = _pyplot()
    written = []
    for model, rows in points.groupby("model", sort=True):
        fig, ax = plt.subplots(figsize=(8, 5))
        for label, line in rows.groupby("label", sort=True):
            ax.plot(line["per_user"], line["output_tok_s"], "o", label=label)
        front = pareto_front(list(zip(rows["per_user"], rows["output_tok_s"])))
        ax.plot([p[0] for p in front], [p[1] for p in front], "k--", lw=1, label="Pareto frontier")
        ax.set_xlabel("tokens/s per user (mean decode rate a user sees)")
        ax.set_ylabel("output tokens/s per chip (one device per point)")
        ax.set_title(f"{model}: throughput per chip against interactivity", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.tight_layout()
        written.append(out_dir / f"serving-pareto-{model}.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written


# --- generation ----------------------------------------------------------------------------------------

@section("generation", "Generation: time to first token and time per output token", order=70,
         note="TTFT = prefill until the first token exists; TPOT = (latency - TTFT) / (tokens - 1); ITL = gaps "
              "between consecutive tokens. decode tok/s = batch / mean TPOT. Greedy, KV cache on, fixed token count.")
def generation_table(df: pd.DataFrame) -> pd.DataFrame | None:
    rows = []
    for _, row in df.iterrows():
        rec = row["record"]
        if rec.config.scenario.name != "generate":
            continue
        item = {k: row[k] for k in ("machine", "model", "weights", "backend", "device", "variant", "batch", "seq",
                                    "status")}
        gen = rec.metrics.generation
        if gen:
            item.update({"new_tokens": gen.new_tokens, "ttft_p50_ms": gen.ttft.p50_ms, "ttft_p90_ms": gen.ttft.p90_ms,
                         "tpot_p50_ms": gen.tpot.p50_ms if gen.tpot else None,
                         "tpot_p90_ms": gen.tpot.p90_ms if gen.tpot else None,
                         "itl_p99_ms": gen.itl.p99_ms if gen.itl else None, "e2e_p50_ms": gen.e2e.p50_ms,
                         "decode_tok_s": gen.throughput.decode_tokens_per_s,
                         "output_tok_s": gen.throughput.output_tokens_per_s, "n": gen.e2e.count})
        rows.append(item)
    return drop_single_machine(pd.DataFrame(rows)) if rows else None
