"""The generate and server scenarios end to end on tiny models through the isolated runner."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.validity import min_queries
from bench.records.store import load_records

from conftest import TINY_BERT, TINY_GPT2, figure_points, figure_texts, tiny_suite


def test_generate_and_server_scenarios(write_suite, tmp_path, saved_figures):
    # a p50 claim keeps the tiny run short: the early-stopping rule needs 11 requests for it (662 for p99)
    server = {"name": "server", "options": {"rate_qps": 40, "batching": "dynamic", "max_wait_ms": 5,
                                            "latency_bound_ms": 500, "percentile": 0.5}}
    path = write_suite(tiny_suite(models=[TINY_GPT2, TINY_BERT], batch_sizes=[2], quality={"enabled": False},
                                  scenarios=[{"name": "generate", "options": {"new_tokens": 5}}, server],
                                  defaults={"warmup_iterations": 1, "warmup_s": 0, "min_iterations": min_queries(0.5),
                                            "min_duration_s": 0.2, "intra_op_threads": 1, "timeout_s": 120}))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--find-peak"]) == 0
    recs = load_records(out)
    assert len(recs) == 3 and all(r.status == "ok" for r in recs), [r.error for r in recs]
    gen = next(r for r in recs if r.config.scenario.name == "generate")
    g = gen.metrics.generation
    assert g.new_tokens == 5 and g.ttft.count >= 8
    assert g.tpot.p50_ms > 0 and g.throughput.decode_tokens_per_s > 0
    assert [p.name for p in gen.metrics.work.phases] == ["prefill", "decode"]
    assert set(gen.metrics.phase_seconds) == {"prefill", "decode"}
    servers = [r for r in recs if r.config.scenario.name == "server"]
    assert {r.config.model.name for r in servers} == {"tiny-gpt2", "tiny-bert"}
    for r in servers:
        s = r.metrics.server
        assert r.config.scenario.options["find_peak"] is True  # --find-peak reached the point
        assert s.requests >= min_queries(0.5) and s.latency_ms["p99"] >= s.latency_ms["p50"] > 0
        assert s.validity.percentile == 0.5 and s.validity.checks["min_queries"] and s.validity.checks["min_duration"]
        assert r.metrics.peak.history and r.metrics.samples_ms
        assert not any("queries <" in reason for probe in r.metrics.peak.history for reason in probe.reasons)
    # the tables and the curve carry what the records measured, one row (one curve) per point
    serving = pd.read_csv(out / "serving.csv").set_index("model")
    assert sorted(serving.index) == ["tiny-bert", "tiny-gpt2"]
    for r in servers:
        row, s = serving.loc[r.config.model.name], r.metrics.server
        assert (row["target_qps"], row["requests"], row["valid"]) == (40.0, s.requests, s.validity.valid)
        assert row["p99_ms"] == pytest.approx(s.latency_ms["p99"])
        assert row["p50_ms"] == pytest.approx(s.latency_ms["p50"])
        assert row["completed_per_s"] == pytest.approx(s.completed_samples_per_s)
        assert row["mean_batch"] == pytest.approx(s.mean_batch_size)
        assert (row["reasons"] if isinstance(row["reasons"], str) else "") == "; ".join(s.validity.reasons)
    (generation,) = pd.read_csv(out / "generation.csv").to_dict("records")
    assert (generation["model"], generation["new_tokens"], generation["n"]) == ("tiny-gpt2", 5, g.e2e.count)
    assert generation["ttft_p50_ms"] == pytest.approx(g.ttft.p50_ms)
    assert generation["tpot_p50_ms"] == pytest.approx(g.tpot.p50_ms)
    assert generation["decode_tok_s"] == pytest.approx(g.throughput.decode_tokens_per_s)
    (fig, path), = [(f, p) for f, p in saved_figures if p.name == "throughput-latency.png"]
    assert path == out / "throughput-latency.png"
    expected = [(r.metrics.server.completed_samples_per_s, r.metrics.server.latency_ms["p99"]) for r in servers]
    expected += [(h.completed_samples_per_s, h.p99_ms) for r in servers for h in r.metrics.peak.history]
    np.testing.assert_allclose(sorted(figure_points(fig)), sorted(expected))  # each run and each peak probe
    assert {"tiny-gpt2 pytorch/fp32 (dynamic)", "tiny-bert pytorch/fp32 (dynamic)"} <= set(figure_texts(fig))


def test_generate_is_skipped_for_encoders(write_suite):
    from bench.config import load_suite
    from bench.plan import build_plan

    path = write_suite(tiny_suite(models=[TINY_BERT], scenarios=["generate"]))
    plan = build_plan(load_suite(path), path)
    assert not plan.points and "causal-lm" in plan.skipped[0][1]
