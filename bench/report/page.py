"""report.html: one self-contained page to publish (figures embedded as base64 PNG, no external asset, no
script, nothing fetched from the network).

It opens with what a reader came for: per model, the best variant within the quality bound, said plainly
where quality cannot decide or nothing meets the bound; then where the numbers come from (machines,
harness, random weights, thin or noisy samples); then the charts; then every table, folded.
"""

from __future__ import annotations

import base64
import html
from collections import Counter
from pathlib import Path

import pandas as pd

from ..analysis.frame import SIGNIFICANCE
from ..analysis.serving import capacity_estimate, capacity_text, load_text, slo_text
from .answer import NOTHING_MEETS, RANDOM, UNMEASURED, WITHIN, best_variants, headline, shape_label, speed_phrase
from .formatting import display, natural_order
from .serving import engine_of

STYLE = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2329;margin:0;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:36px 0 12px;border-bottom:1px solid #d5d9de;padding-bottom:4px}
h3{font-size:17px;margin:0 0 8px}
.lede{color:#4a535c;margin:0 0 18px}
.card{background:#fff;border:1px solid #d5d9de;border-radius:8px;padding:14px 18px;margin:0 0 14px}
.badge{display:inline-block;font-size:12px;font-weight:600;border-radius:10px;padding:1px 9px;margin-left:6px;
 vertical-align:middle}
.real{background:#e3f1e4;color:#1e5e22}.random{background:#fdecd2;color:#8a4b00}
ul.answers{list-style:none;margin:0;padding:0}
ul.answers li{border-left:5px solid #8a8a8a;padding:6px 10px;margin:6px 0;background:#fafbfc}
ul.answers li.within{border-color:#2e7d32}ul.answers li.nothing{border-color:#c62828}
ul.answers li.speed-only{border-color:#ef6c00}
.shape{display:inline-block;min-width:13em;margin-right:12px;color:#4a535c;
 font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px}
.verdict{display:inline-block;font-size:12px;font-weight:600;border-radius:4px;padding:0 6px;margin-right:8px;
 background:#eceff2}
.warn{color:#8a4b00}
dl.prov{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}
dl.prov dt{font-weight:600;color:#4a535c}dl.prov dd{margin:0}
figure{background:#fff;border:1px solid #d5d9de;border-radius:8px;margin:0 0 16px;padding:10px}
figure img{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption{font-size:13px;color:#4a535c;margin-top:6px}
details{background:#fff;border:1px solid #d5d9de;border-radius:8px;margin:0 0 10px;padding:8px 14px}
summary{cursor:pointer;font-weight:600}
.note{font-size:13px;color:#4a535c}
.wrap{overflow-x:auto}
table.data{border-collapse:collapse;font:12px/1.4 ui-monospace,Menlo,Consolas,monospace;margin:8px 0}
table.data th,table.data td{border-bottom:1px solid #e4e7eb;padding:3px 8px;text-align:left;white-space:nowrap}
table.data th{background:#f0f2f5;position:sticky;top:0}
footer{margin-top:36px;font-size:13px;color:#4a535c}
"""
ANSWER_CLASS = {WITHIN: "within", NOTHING_MEETS: "nothing", RANDOM: "speed-only", UNMEASURED: "speed-only"}
FLAGS = {"random weights": "valid for speed only; quality describes numerical drift",
         "insufficient sample": "fewer queries or a shorter window than the suite asks for",
         "too few requests": "a serving run with fewer requests than the suite's minimum or the early-stopping rule "
                             "needs for its SLO's highest percentile",
         "run too short": "a serving run shorter than the suite's minimum duration",
         "over the SLO": "a serving run whose tail latency (the early-stopping upper bound on an SLO percentile) is "
                         "over its bound: the load is more than the system serves within the SLO",
         "unserved requests": "a serving run that stopped with requests unserved (over-saturated, or at its "
                              "deadline): overloaded at that load",
         "failed requests": "a serving run in which the system failed requests (counted, never dropped)",
         "unstable": "stdev at or above the suite's instability threshold of the mean",
         "outliers": "min or max 50% or more away from the mean"}


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _embedded(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _machine_line(rec) -> str:
    m = rec.machine.model_dump()
    cpu = m.get("cpu") or {}
    parts = [cpu.get("model"), f"{cpu['logical_cores']} logical cores" if cpu.get("logical_cores") else None,
             ", ".join(g.get("name", "") for g in m.get("gpus") or []) or None,
             f"{m['memory_bytes'] / 2**30:.0f} GiB" if m.get("memory_bytes") else None, m.get("os"),
             f"torch {m['libraries']['torch']}" if (m.get("libraries") or {}).get("torch") else None]
    described = ", ".join(p for p in parts if p)
    return f"<b>{_e(rec.machine_id)}</b>" + (f": {_e(described)}" if described else "")


def _flag_lines(df: pd.DataFrame) -> list[str]:
    lines = []
    for flag, meaning in FLAGS.items():
        hit = df[df["flags"].str.contains(flag, regex=False)]
        if hit.empty:
            continue
        if flag == "random weights":
            what = ", ".join(sorted(set(hit["model"])))
        else:
            labels = [f"{r['model']} {r['variant']} {shape_label(r)}" for _, r in hit.iterrows()]
            what = "; ".join(labels[:6]) + (f"; and {len(labels) - 6} more" if len(labels) > 6 else "")
        lines.append(f"<span class='warn'><b>{_e(flag)}</b></span> ({len(hit)} point(s): {_e(what)}): {_e(meaning)}")
    return lines


def _provenance(df: pd.DataFrame) -> str:
    records = list(df["record"])
    latest = {r.machine_id: r for r in sorted(records, key=lambda r: r.started_at)}
    status = Counter(df["status"])
    started = sorted(r.started_at for r in records)
    flags = _flag_lines(df)
    rows = [("Machines", "<br>".join(_machine_line(r) for _, r in sorted(latest.items()))),
            ("Harness", _e(", ".join(sorted({r.harness.label for r in records})))),
            ("Measured", _e(f"{started[0]:%Y-%m-%d %H:%M} to {started[-1]:%Y-%m-%d %H:%M} UTC")),
            ("Points", _e(", ".join(f"{n} {s}" for s, n in status.most_common()) +
                          "; only measured figures appear above the tables, projections onto other chips are "
                          "labelled `projected` in their own table")),
            ("Flags", "<br>".join(flags) if flags else "none: every point has real weights, enough queries and a "
                                                         "stable spread")]
    return "<dl class='prov'>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def _answers(df: pd.DataFrame) -> str:
    best = best_variants(df)
    serving = _serving_answers(df)
    if best is None:
        return serving or "<p>No point was measured.</p>"
    several = best["machine"].nunique() > 1
    devices = best["device"].nunique() > 1
    cards = []
    for (model, machine), rows in best.groupby(["model", "machine"], sort=True):
        weights = rows["weights"].iloc[0]
        badge = (f"<span class='badge {_e(weights)}'>{_e(weights)} weights</span>" if weights in ("real", "random")
                 else "")
        on = f" <span class='note'>on {_e(machine)}</span>" if several else ""
        items = [f"<li class='{ANSWER_CLASS.get(r['answer'], 'other')}'><span class='shape'>"
                 f"{_e(shape_label(r, devices))}</span><span class='verdict'>{_e(r['answer'])}</span>"
                 f"{_e(headline(r))}</li>" for _, r in rows.iterrows()]
        caveat = ""
        if weights == "random":
            caveat = ("<p class='note warn'>Random weights: these figures are valid for speed only; quality against "
                      "fp32 says nothing about a trained model.</p>")
        cards.append(f"<article class='card'><h3>{_e(model)}{badge}{on}</h3><ul class='answers'>{''.join(items)}"
                     f"</ul>{caveat}</article>")
    return "".join(cards) + serving


def _serving_answers(df: pd.DataFrame) -> str:
    """Per served model (and machine): each variant, engine and load with its capacity at the SLO, the answer a
    serving point gives instead of a speedup."""
    rows = df[df["serving"]]
    if rows.empty:
        return ""
    several = rows["machine"].nunique() > 1
    cards = []
    for (model, machine), group in rows.groupby(["model", "machine"], sort=True):
        items = []
        for _, r in group.sort_values(["scenario", "variant"], kind="stable", key=natural_order).iterrows():
            m = r["record"].metrics.serving if r["status"] == "ok" else None
            if m is None:
                verdict, kind, what = r["status"], "nothing", r["error"]
            else:
                estimate = capacity_estimate(r["process_records"])
                verdict = capacity_text(estimate) or "no capacity (a burst)"
                kind = "other" if estimate is None else "nothing" if estimate.value is None else "within"
                slo = slo_text(r["record"])
                rate = (f"{m.output_tokens_per_s:.1f} output tok/s" if m.output_tokens
                        else f"{m.requests_per_s:.1f} req/s")
                what = (f" within {slo}" if slo != "no SLO" else " (no SLO: the load it kept up with)") + \
                    f"; measured at {load_text(m)}: {rate}"
            items.append(f"<li class='{kind}'><span class='shape'>{_e(r['variant'])} · {_e(engine_of(r))}</span>"
                         f"<span class='verdict'>{_e(verdict)}</span>{_e(what)}</li>")
        on = f" <span class='note'>on {_e(machine)}</span>" if several else ""
        cards.append(f"<article class='card'><h3>{_e(model)}: capacity at the SLO{on}</h3><ul class='answers'>"
                     f"{''.join(items)}</ul></article>")
    return "".join(cards)


def _machines(parts) -> str:
    """With several machines: per workload, the fastest machine and by how much (the hardware section)."""
    table = next((p.table for p in parts if p.name == "hardware"), None)
    if table is None:
        return ""
    items = []
    for _, r in table.iterrows():
        said = (": " + speed_phrase(r["best_speedup"], r["best_speedup_ci_low"], r["best_speedup_ci_high"],
                                    r["best_speedup_sig"], r["runner_up"])) if r["runner_up"] else " (only one machine)"
        items.append(f"<li><span class='shape'>{_e(r['model'])} {_e(r['backend'])}/{_e(r['variant'])} "
                     f"{_e(r['scenario'])} b{_e(r['batch'])} s{_e(r['seq'])}</span><b>{_e(r['best'])}</b>{_e(said)}</li>")
    return ("<article class='card'><h3>Which machine: the same work measured on each</h3>"
            f"<ul class='answers'>{''.join(items)}</ul></article>")


def _charts(parts) -> str:
    figures = [f"<figure><img alt='{_e(f.stem)}' src='{_embedded(f)}'><figcaption>The numbers behind it: "
               f"<a href='#{_e(p.name)}'>{_e(p.section.title)}</a> (detailed tables)</figcaption></figure>"
               for p in parts for f in p.figures if f.suffix == ".png" and f.exists()]
    return "".join(figures) or "<p class='note'>No chart: nothing measured that a chart could show.</p>"


def _tables(parts) -> str:
    blocks = []
    for part in parts:
        note = f"<p class='note'>{_e(part.section.note)}</p>" if part.section.note else ""
        table = display(part.table).to_html(index=False, border=0, classes="data", escape=True, na_rep="")
        blocks.append(f"<details id='{_e(part.name)}'><summary>{_e(part.section.title)} ({len(part.table)} rows)"
                      f"</summary>{note}<div class='wrap'>{table}</div></details>")
    return "".join(blocks)


def render_page(df: pd.DataFrame, parts) -> str:
    """The page for the report's frame and its sections (writer.Part: table and figures)."""
    from ..records.harness import current_harness

    if df.empty:
        body = "<h1>Benchmark report</h1><p>No records found.</p>"
    else:
        body = (f"<h1>Benchmark report</h1><p class='lede'>{len(df)} point(s) on {df['machine'].nunique()} machine(s). "
                "Speedups are against the fp32 PyTorch point of the same shape on the same machine (and of the same "
                "suite where it measured one), each with its 95% interval.</p>"
                f"<h2 id='answer'>The answer</h2>{_answers(df)}{_machines(parts)}"
                f"<h2 id='provenance'>Where the numbers come from</h2><div class='card'>{_provenance(df)}</div>"
                f"<h2 id='charts'>Charts</h2>{_charts(parts)}"
                f"<h2 id='tables'>Detailed tables</h2>{_tables(parts)}"
                f"<footer>{_e(SIGNIFICANCE)} The same tables are in report.md and one CSV per section beside this "
                f"file. Page made by bench {_e(current_harness().label)}.</footer>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>Benchmark report</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>")
