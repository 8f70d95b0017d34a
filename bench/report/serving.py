"""Generation (TTFT/TPOT by variant) and serving (rate, tail latency, goodput, validity) tables,
and a throughput-latency curve per variant."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import drop_single_machine, section


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


def _server_points(df: pd.DataFrame) -> list[dict]:
    points = []
    several = df["machine"].nunique() > 1
    for _, row in df[df["status"] == "ok"].iterrows():
        m = row["record"].metrics
        if not m.server:
            continue
        on = f" on {row['machine']}" if several else ""
        label = f"{row['model']} {row['backend']}/{row['variant']} ({m.batching.policy}){on}"
        points.append({"label": label, "rate": m.server.target_qps, "throughput": m.server.completed_samples_per_s,
                       "p99_ms": m.server.latency_ms["p99"]})
        for h in (m.peak.history if m.peak else []):
            points.append({"label": label, "rate": h.rate_qps, "throughput": h.completed_samples_per_s,
                           "p99_ms": h.p99_ms})
    return points


def _curve(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    points = _server_points(df)
    if not points:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, group in pd.DataFrame(points).groupby("label"):
        group = group.sort_values("rate")
        ax.plot(group["throughput"], group["p99_ms"], "o-", label=label)
    ax.set_xlabel("completed samples/s")
    ax.set_ylabel("p99 latency from scheduled arrival (ms)")
    ax.set_yscale("log")
    ax.set_title("Throughput against tail latency")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / "throughput-latency.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


@section("serving", "Server scenario: arrival rate, tail latency, goodput and MLPerf-style validity", order=80,
         plot=_curve,
         note="Latency is measured from each request's scheduled arrival, so queueing counts. valid = minimum duration, "
              "minimum query count, early-stopping bound on the percentile and the latency bound all met; `reasons` "
              "says which failed. peak = highest rate found by --find-peak that stays valid.")
def serving_table(df: pd.DataFrame) -> pd.DataFrame | None:
    rows = []
    for _, row in df.iterrows():
        rec = row["record"]
        if rec.config.scenario.name != "server":
            continue
        item = {k: row[k] for k in ("machine", "model", "backend", "device", "variant", "scenario", "status")}
        server, peak = rec.metrics.server, rec.metrics.peak
        if server:
            item.update({"driver": rec.config.scenario.options.get("driver", "bench"),
                         "target_qps": server.target_qps, "completed_per_s": server.completed_samples_per_s,
                         "p50_ms": server.latency_ms["p50"], "p99_ms": server.latency_ms["p99"],
                         "bound_ms": server.bounds_ms["latency"], "goodput_per_s": server.goodput_requests_per_s,
                         "mean_batch": server.mean_batch_size, "requests": server.requests,
                         "valid": server.validity.valid, "reasons": "; ".join(server.validity.reasons),
                         "peak_qps": peak.rate_qps if peak else None})
        rows.append(item)
    if not rows:
        return None
    return drop_single_machine(pd.DataFrame(rows).dropna(axis=1, how="all"))
