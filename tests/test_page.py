"""The published page and the terminal summary: the answer first (best variant within the quality bound, said
plainly where quality cannot decide), provenance visible, self-contained, and checked in a real browser."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from builders import record

from bench.analysis.frame import records_frame
from bench.report.answer import NONE_FASTER, NOTHING_MEETS, RANDOM, WITHIN, best_variants, headline
from bench.report.terminal import print_summary
from bench.report.writer import build_report

BOUND = {"metric": "cosine_mean", "min": 0.99}


def within(cosine: float) -> dict:
    return {"quality": {"verdict": "within bound", "within_bound": True, "cosine_mean": cosine, "bound": BOUND}}


def breaks(cosine: float) -> dict:
    return {"quality": {"verdict": "breaks bound", "within_bound": False, "cosine_mean": cosine, "bound": BOUND}}


DRIFT = {"quality": {"verdict": "not meaningful (random weights)", "meaningful": False, "cosine_mean": 0.97}}


def samples(median: float, seed: int) -> list[float]:
    return list(median * (1 + 0.01 * np.random.default_rng(seed).standard_normal(80)))


def suite_records() -> list:
    """Four models, one answer each: a winner within the bound (a faster one breaks it), random weights,
    nothing within the bound, and a variant within the bound that is not significantly faster."""
    enc = dict(model="enc", metrics=within(1.0))
    return [
        record(samples_ms=samples(100, 1), **enc),
        record(variant="bf16", precision="bf16", samples_ms=samples(50, 2), model="enc", metrics=within(0.9995)),
        record(variant="int8", transforms=[{"name": "int8-dynamic"}], samples_ms=samples(25, 3), model="enc",
               metrics=breaks(0.95)),
        record(model="dec", weights="random", samples_ms=samples(80, 4), metrics=DRIFT),
        record(model="dec", weights="random", variant="bf16", precision="bf16", samples_ms=samples(40, 5),
               metrics={**DRIFT, "sufficient": False}),
        record(model="strict", samples_ms=samples(100, 6), metrics=within(1.0)),
        record(model="strict", variant="int8", transforms=[{"name": "int8-dynamic"}], samples_ms=samples(30, 7),
               metrics=breaks(0.9)),
        record(model="same", samples_ms=samples(100, 8), metrics=within(1.0)),
        record(model="same", variant="bf16", precision="bf16", samples_ms=samples(100.3, 9), metrics=within(0.9999)),
    ]


class _Text(HTMLParser):
    """The text a reader sees: everything outside tags, script and style."""

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("style", "script")

    def handle_endtag(self, tag):
        self._skip -= tag in ("style", "script")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return re.sub(r"\s+", " ", "".join(parser.parts))


def expected_headline(frame, model: str, variant: str) -> str:
    """The speedup and its interval as the frame computed them, in the words the page uses."""
    row = frame[(frame["model"] == model) & (frame["variant"] == variant)].iloc[0]
    return (f"{variant}: {row['speedup_p50']:.2f}x faster than fp32 "
            f"[95% CI {row['speedup_p50_ci_low']:.2f}, {row['speedup_p50_ci_high']:.2f}]")


def test_best_variant_per_model_says_what_quality_allows():
    best = best_variants(records_frame(suite_records())).set_index("model")
    assert best.loc["enc", "answer"] == WITHIN and best.loc["enc", "variant"] == "bf16"
    assert best.loc["enc", "speedup_p50"] == pytest.approx(2.0, rel=0.02)
    assert best.loc["enc", "size_ratio"] == pytest.approx(1.0)
    assert best.loc["enc", "excluded"].startswith("int8 4.0") and "BREAKS >= 0.99" in best.loc["enc", "excluded"]
    assert best.loc["dec", "answer"] == RANDOM and best.loc["dec", "variant"] == "bf16"
    assert best.loc["dec", "flags"] == "insufficient sample"  # random weights are the answer, not a flag
    assert best.loc["strict", "answer"] == NOTHING_MEETS and best.loc["strict", "variant"] == "fp32"
    assert best.loc["same", "answer"] == NONE_FASTER and best.loc["same", "variant"] == "fp32"
    assert best.loc["same", "closest"].startswith("bf16: 1.00x the speed of fp32 (not significantly different)")


@pytest.mark.parametrize("weights, quality, answer", [("real", within(0.9999), NONE_FASTER), ("random", DRIFT, RANDOM)],
                         ids=["real weights", "random weights"])
def test_when_nothing_is_faster_the_answer_keeps_fp32_not_a_slower_variant(tmp_path, weights, quality, answer):
    """Defect: with every variant slower, the answer named one ("closest: bf16: 0.62x ... significantly slower")
    and best.csv listed it as the pick. The pick is fp32; the closest variant is named only as information."""
    recs = [record(model="slow", weights=weights, samples_ms=samples(50, 10), metrics=quality),
            record(model="slow", weights=weights, variant="bf16", precision="bf16", samples_ms=samples(80, 11),
                   metrics=quality)]
    (row,) = best_variants(records_frame(recs)).to_dict("records")
    assert row["answer"] == answer and row["variant"] == "fp32" and row["speedup_p50_sig"] == "baseline"
    assert row["closest"].startswith("bf16: 0.6") and "significantly slower" in row["closest"]
    assert headline(row).startswith("No variant is significantly faster than fp32")
    assert ": keep fp32. Closest: bf16: 0.6" in headline(row)
    build_report(recs, tmp_path)
    import pandas as pd

    (pick,) = pd.read_csv(tmp_path / "best.csv").to_dict("records")
    assert pick["variant"] == "fp32" and pick["answer"] == answer


def test_page_opens_with_the_answer_and_embeds_everything(tmp_path):
    records = suite_records()
    md, files = build_report(records, tmp_path)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    text = visible_text(page)
    frame = records_frame(records)

    answer, charts, tables = (text.index(h) for h in ("The answer", "Charts", "Detailed tables"))
    assert answer < charts < tables
    first = text[answer:charts]
    assert expected_headline(frame, "enc", "bf16") in first
    assert "Faster but over the bound: int8" in first
    assert "Speed only: quality is not meaningful with random weights" in first
    assert "Nothing meets the quality bound: keep fp32" in first
    assert "No variant is significantly faster than fp32 within the quality bound" in first
    assert "Random weights: these figures are valid for speed only" in first

    provenance = text[text.index("Where the numbers come from"):charts]
    assert "test-machine" in provenance and "0.0.test" in provenance
    assert "random weights (2 point(s): dec)" in provenance
    assert "insufficient sample (1 point(s): dec bf16 single-stream b8 s128)" in provenance

    # self-contained: every image is embedded, nothing is fetched
    assert not re.search(r"https?://|<link|<script|url\(", page)
    assert not re.findall(r"src=['\"](?!data:image/png;base64,)", page)
    pngs = [f for f in files if f.suffix == ".png"]
    embedded = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(embedded) == len(pngs) >= 3  # latency per model with a baseline, speed against quality
    assert all(base64.b64decode(e)[:8] == b"\x89PNG\r\n\x1a\n" for e in embedded)
    assert "<details" in page and "Comparison (speedup" in text[tables:]
    assert "| enc" in md  # report.md keeps every wide table


def test_latency_chart_whiskers_are_the_records_median_intervals(tmp_path, saved_figures):
    records = suite_records()[:3]
    build_report(records, tmp_path)
    (fig, _), = [(f, p) for f, p in saved_figures if p.name.startswith("latency-enc")]
    ax = fig.axes[0]
    bars = sorted((p.get_y(), p.get_width()) for p in ax.patches if p.get_width() > 0)
    from matplotlib.container import ErrorbarContainer

    errorbar, = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    whiskers = sorted((seg[0][1], seg[0][0], seg[1][0]) for seg in errorbar.lines[2][0].get_segments())
    by_p50 = sorted(records, key=lambda r: r.metrics.latency.p50_ms)  # the chart lists the fastest first
    for (_, width), (_, low, high), rec in zip(bars, whiskers, by_p50):
        assert width == pytest.approx(rec.metrics.latency.p50_ms)
        assert (low, high) == pytest.approx(rec.metrics.latency.median_ci95_ms)
    (fig, _), = [(f, p) for f, p in saved_figures if p.name.startswith("speed-quality-enc")]
    frame = records_frame(records).set_index("variant")
    points = [xy for line in fig.axes[0].get_lines() if line.get_marker() == "o" for xy in zip(*line.get_data())]
    np.testing.assert_allclose(sorted(points),
                               sorted((frame.loc[v, "speedup_p50"], frame.loc[v, "cosine_mean"]) for v in ("bf16", "int8")))


def test_several_machines_say_which_is_faster(tmp_path, saved_figures):
    records = [record(machine=m, samples_ms=samples(p50, i), metrics=within(1.0))
               for i, (m, p50) in enumerate((("box-a", 100), ("box-b", 50)))]
    build_report(records, tmp_path)
    text = visible_text((tmp_path / "report.html").read_text(encoding="utf-8"))
    assert "Which machine" in text and "box-b: 2.00x faster than box-a [95% CI" in text
    (fig, _), = [(f, p) for f, p in saved_figures if p == tmp_path / "machines-m.png"]
    ax = fig.axes[0]
    p50 = records_frame(records).set_index("machine")["p50_ms"]
    bars = {bar.get_label(): [patch.get_width() for patch in bar] for bar in ax.containers}
    assert bars == {"box-a": [pytest.approx(p50["box-a"])], "box-b": [pytest.approx(p50["box-b"])]}
    assert [tick.get_text() for tick in ax.get_yticklabels()] == ["pytorch/fp32 · single-stream b8 s128"]
    (note,) = [t.get_text() for t in ax.texts]
    assert re.fullmatch(r"best: box-b\n2\.0\dx \[\d\.\d\d, \d\.\d\d\] vs box-a", note)


def test_terminal_summary_fits_120_columns(tmp_path):
    from rich.console import Console

    out = io.StringIO()
    noisy = [45 * (1 + 0.4 * (i % 2)) for i in range(64)]  # a long name and long notes (unstable)
    records = [*suite_records(), record(variant="compile-max-autotune-bf16", backend="torch-compile", precision="bf16",
                                        samples_ms=noisy, model="enc", metrics=within(0.9999))]
    print_summary(Console(file=out, width=300), records_frame(records), [tmp_path / "report.html"])
    printed = out.getvalue()
    assert max(len(line) for line in printed.splitlines()) <= 120
    ratio_lines = [line for line in printed.splitlines() if re.search(r"\d\.\d\dx \[", line)]
    # one line a point: no interval folded onto a second line
    assert ratio_lines and all(re.search(r"\d\.\d\dx \[\d+\.\d+, \d+\.\d+\]", line) for line in ratio_lines)
    assert "Best variant per model" in printed and "| enc" not in printed
    assert re.search(r"enc \(single-stream b8 s128\):\s+bf16: 2\.0\dx faster than fp32", printed)
    assert "random weights" in printed and "BREAKS" in printed
    assert f"report: {tmp_path / 'report.html'} (open it in a browser)" in printed


def _browser() -> str | None:
    return next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


@pytest.mark.skipif(_browser() is None, reason="no headless browser installed (apt-get install chromium)")
def test_page_renders_in_a_headless_browser(tmp_path):
    records = suite_records()
    build_report(records, tmp_path / "report")
    url = (tmp_path / "report" / "report.html").as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,900"]
    dom = subprocess.run([_browser(), *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    text = visible_text(dom)
    assert expected_headline(records_frame(records), "enc", "bf16") in text
    assert "Nothing meets the quality bound" in text and "Speed only" in text
    shot = tmp_path / "shot.png"
    subprocess.run([_browser(), *flags, f"--screenshot={shot}", url], capture_output=True, timeout=120)
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (900, 1280)
    colours = {tuple(c) for c in (pixels.reshape(-1, 3) * 255).astype(int)[::97]}
    assert len(colours) > 20  # text, cards, coloured answer borders: not a blank or one-colour page


def test_a_server_point_says_which_validity_check_failed_not_insufficient_sample(tmp_path):
    """Defect: a server point over its latency bound was flagged "insufficient sample" ("fewer queries or a
    shorter window") on the page and in the terminal; the flag now names the check that failed."""
    from builders import serving_metrics

    from bench.report.page import FLAGS

    failures = {"over the SLO": dict(checks={"slo": False}, estimate_ms=150.0),
                "too few requests": dict(checks={"min_requests": False, "slo": False}, estimate_ms=None),
                "run too short": dict(checks={"min_duration": False}),
                "unserved requests": dict(checks={"served": False}),
                "failed requests": dict(checks={"no_failures": False})}
    records = [record(scenario="server", options={"rate_qps": rate}, metrics=serving_metrics(rate, **failed))
               for rate, failed in enumerate(failures.values(), start=10)]
    assert records_frame(records)["flags"].tolist() == list(failures)
    build_report(records, tmp_path)
    provenance = visible_text((tmp_path / "report.html").read_text(encoding="utf-8"))
    for rate, flag in enumerate(failures, start=10):
        assert f"{flag} (1 point(s): m fp32 server(rate_qps={rate}) b8 s128): {FLAGS[flag]}" in provenance
    out = io.StringIO()
    from rich.console import Console

    print_summary(Console(file=out, width=120), records_frame(records), [tmp_path / "report.html"])
    assert "insufficient" not in provenance + out.getvalue()
    assert all(flag in out.getvalue() for flag in failures)


def test_terminal_summary_keeps_variant_and_verdict_with_long_scenario_names(tmp_path):
    """Defect: with two long server scenario names the shape column took the whole width and the 120-column table
    ended at `model | shape | p50 ms | vs fp32 [95%`: nothing said which row was fp32 and which int8. (Serving
    points have no speedup now; any scenario's options may run as long.)"""
    from rich.console import Console

    options = {"batching": "dynamic", "latency_bound_ms": 130, "max_wait_ms": 5, "distribution": "poisson",
               "burstiness": 1.0, "driver": "bench"}
    records = [record(scenario="offline", options={**options, "rate_qps": rate}, samples_ms=samples(median, seed),
                      **variant)
               for seed, (rate, variant, median) in enumerate(
                   (rate, variant, median) for rate in (20, 40)
                   for variant, median in (({}, 100.0), ({"variant": "int8", "transforms": [{"name": "int8-dynamic"}]},
                                                         50.0)))]
    out = io.StringIO()
    print_summary(Console(file=out, width=120), records_frame(records), [tmp_path / "report.html"])
    printed = out.getvalue()
    assert max(len(line) for line in printed.splitlines()) <= 120
    rows = re.findall(r"^m +(fp32|int8) .*?(baseline|2\.0\dx \[)", printed, re.MULTILINE)
    assert sorted((variant, verdict[:3]) for variant, verdict in rows) == [("fp32", "bas")] * 2 + [("int8", "2.0")] * 2
    assert all(f"rate_qps={rate}" in printed for rate in (20, 40))
