"""The generate scenario, and --find-peak on a server point, end to end on tiny models through the isolated runner."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from serving_fakes import child_with_fakes, register_fakes

from bench.cli import main
from bench.executors import local as local_executor
from bench.records.store import load_records
from bench.validity import min_queries

from conftest import TINY_BERT, TINY_GPT2, figure_texts, tiny_suite


def test_generate_and_a_server_point_with_find_peak(write_suite, tmp_path, saved_figures, monkeypatch):
    real = local_executor.run_isolated
    monkeypatch.setattr(local_executor, "run_isolated",
                        lambda *args, **kwargs: real(*args, **kwargs, target=child_with_fakes))
    register_fakes(monkeypatch)
    # a p50 SLO keeps the tiny run short: the early-stopping rule needs 11 requests for it (662 for p99)
    server = {"name": "server", "options": {"rate_qps": 40, "engine": "fake-pool", "capacity_probes": 3,
                                            "slo": {"e2e_ms": {"p50": 500}}}}
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
    assert "capacity" not in gen.config.scenario.options  # --find-peak reaches serving points only
    servers = [r for r in recs if r.config.scenario.name == "server"]
    assert {r.config.model.name for r in servers} == {"tiny-gpt2", "tiny-bert"}
    for r in servers:
        assert r.config.scenario.options["capacity"] is True  # --find-peak reached the point
        capacity = r.metrics.capacity
        assert capacity.parameter == "rate_per_s" and 2 <= len(capacity.probes) <= 3
        assert all(p.metrics.load.rate_per_s == p.load and p.metrics.requests >= min_queries(0.5)
                   for p in capacity.probes)
        assert not any("requests <" in reason for probe in capacity.probes for reason in probe.reasons)
    (generation,) = pd.read_csv(out / "generation.csv").to_dict("records")
    assert (generation["model"], generation["new_tokens"], generation["n"]) == ("tiny-gpt2", 5, g.e2e.count)
    assert generation["ttft_p50_ms"] == pytest.approx(g.ttft.p50_ms)
    assert generation["tpot_p50_ms"] == pytest.approx(g.tpot.p50_ms)
    assert generation["decode_tok_s"] == pytest.approx(g.throughput.decode_tokens_per_s)
    # the capacity probes are the points of the throughput-latency curve (embeddings: requests/s against E2E)
    (fig, path), = [(f, p) for f, p in saved_figures if p.name == "throughput-latency.png"]
    assert path == out / "throughput-latency.png"
    expected = [(p.metrics.e2e_ms.p99, p.metrics.requests_per_s) for r in servers for p in r.metrics.capacity.probes
                if r.config.model.name == "tiny-bert" and not p.metrics.stop_reason]
    embeddings = [ax for ax in fig.axes if "embeddings" in ax.get_xlabel()][0]
    drawn = [p for line in embeddings.get_lines() if line.get_marker() == "o"
             for p in zip(line.get_xdata(), line.get_ydata())]
    np.testing.assert_allclose(sorted(drawn), sorted(expected))
    assert "tiny-bert pytorch/fp32 fake-pool (server)" in figure_texts(fig)


def test_generate_is_skipped_for_encoders(write_suite):
    from bench.config import load_suite
    from bench.plan import build_plan

    path = write_suite(tiny_suite(models=[TINY_BERT], scenarios=["generate"]))
    plan = build_plan(load_suite(path), path)
    assert not plan.points and "causal-lm" in plan.skipped[0][1]
