"""Sparsity and structure against latency against quality, and a latency-quality plot with a Pareto front per
shape."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..analysis.frame import SHAPE, SIGNIFICANCE, with_interval
from . import drop_single_machine, section
from .charts import pareto_front

FRONT_SHAPE = [c for c in SHAPE if c not in ("machine", "model")]  # a plot is per machine and model


def _structure(rec) -> str:
    """Each transform's own description, with what a pruning transform achieved where it says so."""
    parts = []
    for t in rec.provenance.transforms:
        achieved = []
        if "achieved_sparsity" in t:
            achieved.append(f"achieved {t['achieved_sparsity']:.1%}")
        if "params_before" in t and "params_after" in t:
            achieved.append(f"params {t['params_before'] / 1e6:.1f}M -> {t['params_after'] / 1e6:.1f}M")
        parts.append(t.get("description", t["name"]) + (f" ({', '.join(achieved)})" if achieved else ""))
    return "; ".join(parts) or "dense"


def _has_pruning(rec) -> bool:
    from ..variants import transforms

    return any(transforms.get(t.name).kind == "pruning" for t in rec.config.variant.transforms if t.name in transforms)


def _quality(row) -> float:
    return row["cosine_mean"] if pd.notna(row["cosine_mean"]) else row["ppl_ratio"]


def _pruned_models(df: pd.DataFrame) -> pd.DataFrame:
    """Every row of a model (on a machine) that has at least one pruned variant, so the dense rows compare."""
    keys = {(row["machine"], row["model"]) for _, row in df.iterrows() if _has_pruning(row["record"])}
    return df[[(m, n) in keys and not serving for m, n, serving in zip(df["machine"], df["model"], df["serving"])]]


def _pareto(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = df[(df["status"] == "ok") & (df["cosine_mean"].notna() | df["ppl_ratio"].notna())]
    written = []
    for (machine, model), rows in ok.groupby(["machine", "model"]):
        if len(rows) < 2:
            continue
        encoder = rows["cosine_mean"].notna().any()
        fig, ax = plt.subplots(figsize=(7, 4.5))
        pts = [(r["p50_ms"], _quality(r), f"{r['backend']}/{r['variant']} b{r['batch']}") for _, r in rows.iterrows()]
        for x, y, label in pts:
            ax.plot(x, y, "o")
            ax.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        # a front per shape: a b1 point's latency says nothing against a b8 point's
        shapes = rows.groupby(FRONT_SHAPE, sort=True, dropna=False)
        for i, (_, group) in enumerate(shapes):
            front = pareto_front([(r["p50_ms"], _quality(r)) for _, r in group.iterrows()], higher_x=False,
                                 higher_y=encoder)
            ax.plot([p[0] for p in front], [p[1] for p in front], "k--", lw=1,
                    label=("Pareto front" + (" (per shape)" if shapes.ngroups > 1 else "")) if i == 0 else None)
        ax.set_xlabel("p50 latency (ms)")
        ax.set_ylabel("embedding cosine vs fp32 (higher is better)" if encoder else "perplexity ratio vs fp32 (lower is better)")
        ax.set_title(f"{model} on {machine}: latency against quality")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"pareto-{model}-{machine[:24]}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


@section("pruning", "Pruning and sparsity: structure against latency against quality", order=30,
         plot=lambda df, out: _pareto(_pruned_models(df), out),
         note="Unstructured sparsity keeps dense tensors, so dense kernels do the same work: a speed ratio near 1.0 "
              "is the expected, honest result. Structured pruning removes heads and FFN neurons and yields a smaller "
              "dense model. Quality is against the unpruned fp32 model on the same text. " + SIGNIFICANCE)
def pruning_table(df: pd.DataFrame) -> pd.DataFrame | None:
    rows = _pruned_models(df)
    if rows.empty:
        return None
    out = rows.copy()
    out["structure"] = [_structure(r) for r in out["record"]]
    cols = ["machine", "model", "weights", "backend", "variant", "batch", "seq", "status", "structure", "p50_ms",
            *with_interval("speedup_p50"), "processes", "size_ratio", "cosine_mean", "ppl_ratio", "kl_mean",
            "top1_agree"]
    out = drop_single_machine(out[cols])
    return out.drop(columns=[c for c in ("cosine_mean", "ppl_ratio", "kl_mean", "top1_agree") if out[c].isna().all()])
