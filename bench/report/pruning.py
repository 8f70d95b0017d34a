"""Sparsity and structure against latency against quality, and a latency-quality Pareto plot."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import section

PRUNING = ("prune-unstructured", "prune-structured", "sparse-csr", "sparse-2to4")


def _structure(rec: dict) -> str:
    parts = []
    for t in (rec.get("provenance") or {}).get("transforms", []):
        if t["name"] == "prune-unstructured":
            parts.append(f"unstructured {t['target_sparsity']:.0%} ({t['scope']}), achieved {t['achieved_sparsity']:.1%}")
        elif t["name"] == "prune-structured":
            parts.append(f"{t['method']}: FFN -{t['achieved_ffn_fraction']:.0%}, heads "
                         f"-{t['achieved_head_fraction']:.0%}, params {t['params_before'] / 1e6:.1f}M -> "
                         f"{t['params_after'] / 1e6:.1f}M")
        elif t["name"] == "sparse-csr":
            parts.append(f"CSR kernels on {t['replaced']} layers")
        elif t["name"] == "sparse-2to4":
            parts.append("2:4 semi-structured")
        elif t["name"] in ("int8-dynamic", "int8-weight-only"):
            parts.append(t["name"])
    return "; ".join(parts) or "dense"


def _quality(row) -> float:
    return row["cosine_mean"] if pd.notna(row["cosine_mean"]) else row["ppl_ratio"]


def _pruned_models(df: pd.DataFrame) -> pd.DataFrame:
    names = {t["name"] for rec in df["record"] for t in rec["config"]["variant"]["transforms"]}
    if not names & set(PRUNING):
        return df.iloc[0:0]
    models = {row["model"] for _, row in df.iterrows()
              if {t["name"] for t in row["record"]["config"]["variant"]["transforms"]} & set(PRUNING)}
    return df[df["model"].isin(models)]


def _pareto(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = df[(df["status"] == "ok") & (df["cosine_mean"].notna() | df["ppl_ratio"].notna())]
    written = []
    for model, rows in ok.groupby("model"):
        if len(rows) < 2:
            continue
        encoder = rows["cosine_mean"].notna().any()
        fig, ax = plt.subplots(figsize=(7, 4.5))
        pts = [(r["p50_ms"], _quality(r), f"{r['backend']}/{r['variant']} b{r['batch']}") for _, r in rows.iterrows()]
        for x, y, label in pts:
            ax.plot(x, y, "o")
            ax.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        better = (lambda a, b: a >= b) if encoder else (lambda a, b: a <= b)
        front = sorted((p for p in pts if not any(q[0] <= p[0] and better(q[1], p[1]) and q != p and
                                                  (q[0] < p[0] or q[1] != p[1]) for q in pts)), key=lambda p: p[0])
        ax.plot([p[0] for p in front], [p[1] for p in front], "k--", lw=1, label="Pareto front")
        ax.set_xlabel("p50 latency (ms)")
        ax.set_ylabel("embedding cosine vs fp32 (higher is better)" if encoder else "perplexity ratio vs fp32 (lower is better)")
        ax.set_title(f"{model}: latency against quality")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"pareto-{model}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


@section("pruning", "Pruning and sparsity: structure against latency against quality", order=30,
         plot=lambda df, out: _pareto(_pruned_models(df), out),
         note="Unstructured sparsity keeps dense tensors, so dense kernels do the same work: a speed ratio near 1.0 "
              "is the expected, honest result. Structured pruning removes heads and FFN neurons and yields a smaller "
              "dense model. Quality is against the unpruned fp32 model on the same text.")
def pruning_table(df: pd.DataFrame) -> pd.DataFrame | None:
    rows = _pruned_models(df)
    if rows.empty:
        return None
    out = rows.copy()
    out["structure"] = [_structure(r) for r in out["record"]]
    cols = ["model", "weights", "backend", "variant", "batch", "seq", "status", "structure", "p50_ms", "speedup_p50",
            "size_ratio", "cosine_mean", "ppl_ratio", "kl_mean", "top1_agree"]
    out = out[cols]
    return out.drop(columns=[c for c in ("cosine_mean", "ppl_ratio", "kl_mean", "top1_agree") if out[c].isna().all()])
