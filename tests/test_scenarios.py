"""The generate and server scenarios end to end on tiny models through the isolated runner."""

from __future__ import annotations

from bench.cli import main
from bench.measurement.validity import min_queries
from bench.records.store import load_records

from conftest import TINY_BERT, TINY_GPT2, tiny_suite


def test_generate_and_server_scenarios(write_suite, tmp_path):
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
    assert gen.metrics.work.decode_step is not None
    servers = [r for r in recs if r.config.scenario.name == "server"]
    assert {r.config.model.name for r in servers} == {"tiny-gpt2", "tiny-bert"}
    for r in servers:
        s = r.metrics.server
        assert r.config.scenario.options["find_peak"] is True  # --find-peak reached the point
        assert s.requests >= min_queries(0.5) and s.latency_ms["p99"] >= s.latency_ms["p50"] > 0
        assert s.validity.percentile == 0.5 and s.validity.checks["min_queries"] and s.validity.checks["min_duration"]
        assert r.metrics.peak.history and r.metrics.samples_ms
        assert not any("queries <" in reason for probe in r.metrics.peak.history for reason in probe.reasons)
    assert (out / "serving.csv").exists() and (out / "generation.csv").exists()
    assert (out / "throughput-latency.png").exists()


def test_generate_is_skipped_for_encoders(write_suite):
    from bench.config import load_suite
    from bench.plan import build_plan

    path = write_suite(tiny_suite(models=[TINY_BERT], scenarios=["generate"]))
    plan = build_plan(load_suite(path), path)
    assert not plan.points and "causal-lm" in plan.skipped[0][1]
