"""Generation timing, arrival schedules, the real-time server driver, validity, and greedy decoding.

No timing assertions about the machine: fake servers sleep a fixed service time, and the checks
only rely on sleep lasting at least as long as asked.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from bench.measurement.generation import GenerationRecord, GenerationTimer, summarize_generation
from bench.measurement.schedule import arrival_schedule
from bench.measurement.server import BatchingPolicy, find_peak_rate, run_server, summarize_server
from bench.measurement.validity import (check_validity, early_stopping_estimate, early_stopping_rank,
                                        min_queries_for_percentile)

MS = 1_000_000  # ns


# --- generation arithmetic -------------------------------------------------------------------

def test_generation_metrics_on_known_timestamps():
    # start at 0; tokens at 100, 110, 125, 135 ms -> TTFT 100, E2E 135, TPOT 35/3, ITL 10, 15, 10
    rec = GenerationRecord(start_ns=0, token_ns=[100 * MS, 110 * MS, 125 * MS, 135 * MS], prompt_tokens=8,
                           batch_size=2)
    assert rec.ttft_s == pytest.approx(0.100)
    assert rec.e2e_s == pytest.approx(0.135)
    assert rec.tpot_s == pytest.approx(0.035 / 3)
    assert rec.itl_s == pytest.approx([0.010, 0.015, 0.010])
    assert np.mean(rec.itl_s) == pytest.approx(rec.tpot_s)
    assert rec.output_tokens_per_s == pytest.approx(2 * 4 / 0.135)
    assert rec.total_tokens_per_s == pytest.approx(2 * (8 + 4) / 0.135)
    assert rec.decode_tokens_per_s == pytest.approx(2 / (0.035 / 3))


def test_single_token_has_no_tpot_and_summary_handles_it():
    one = GenerationRecord(0, [50 * MS], prompt_tokens=4)
    assert one.tpot_s is None and one.itl_s == [] and one.decode_tokens_per_s is None
    s = summarize_generation([one], batch_size=1)
    assert s["tpot_ms"] is None and s["itl_ms"] is None and s["decode_tokens_per_s"] is None
    assert s["ttft_ms"]["p50"] == pytest.approx(50.0)
    assert s["output_tokens_per_s"] == pytest.approx(1 / 0.05)


def test_summarize_generation_percentiles_and_throughput():
    recs = [GenerationRecord(0, [(10 + k) * MS, (20 + k) * MS, (30 + k) * MS], prompt_tokens=5) for k in range(5)]
    s = summarize_generation(recs, batch_size=4)
    assert s["requests"] == 5 and s["batch_size"] == 4 and s["new_tokens"] == 3
    assert s["ttft_ms"]["p50"] == pytest.approx(12.0)
    assert s["ttft_ms"]["mean"] == pytest.approx(12.0)
    assert s["tpot_ms"]["p99"] == pytest.approx(10.0)
    assert s["itl_ms"]["count"] == 10
    e2e = sum(0.030 + k / 1000 for k in range(5))
    assert s["output_tokens_per_s"] == pytest.approx(4 * 15 / e2e)
    assert s["total_tokens_per_s"] == pytest.approx(4 * (15 + 25) / e2e)
    assert s["decode_tokens_per_s"] == pytest.approx(4 * 10 / (5 * 0.020))


def test_generation_timer_with_fake_clock():
    ticks = iter([0, 7 * MS, 9 * MS, 12 * MS])
    timer = GenerationTimer(clock=lambda: next(ticks))

    def fake_generate(on_token):
        for i in range(3):
            on_token(i)

    rec = timer.time(fake_generate, prompt_tokens=3)
    assert rec.tokens == 3 and rec.ttft_s == pytest.approx(0.007) and rec.tpot_s == pytest.approx(0.0025)


# --- arrival schedules -----------------------------------------------------------------------

def test_schedule_is_reproducible_from_its_seed():
    a = arrival_schedule(50, n=200, seed=7)
    assert np.array_equal(a, arrival_schedule(50, n=200, seed=7))
    assert not np.array_equal(a, arrival_schedule(50, n=200, seed=8))
    assert a[0] == 0.0 and np.all(np.diff(a) >= 0) and len(a) == 200
    g = arrival_schedule(50, duration_s=3.0, seed=7, distribution="gamma", burstiness=0.5)
    assert np.array_equal(g, arrival_schedule(50, duration_s=3.0, seed=7, distribution="gamma", burstiness=0.5))
    assert g[-1] < 3.0


@pytest.mark.parametrize("distribution,burstiness", [("poisson", 1.0), ("gamma", 0.25), ("gamma", 4.0)])
def test_schedule_empirical_rate(distribution, burstiness):
    a = arrival_schedule(200, n=50_000, seed=1, distribution=distribution, burstiness=burstiness)
    assert (len(a) - 1) / a[-1] == pytest.approx(200, rel=0.03)
    d = arrival_schedule(200, duration_s=200.0, seed=1, distribution=distribution, burstiness=burstiness)
    assert len(d) / 200.0 == pytest.approx(200, rel=0.03)


def test_gamma_burstiness_raises_interval_cv():
    def cv(x):
        gaps = np.diff(x)
        return gaps.std() / gaps.mean()

    poisson = cv(arrival_schedule(100, n=20_000, seed=3))
    bursty = cv(arrival_schedule(100, n=20_000, seed=3, distribution="gamma", burstiness=0.25))
    smooth = cv(arrival_schedule(100, n=20_000, seed=3, distribution="gamma", burstiness=4.0))
    assert poisson == pytest.approx(1.0, abs=0.05)
    assert bursty == pytest.approx(2.0, rel=0.1) and bursty > poisson > smooth
    assert smooth == pytest.approx(0.5, rel=0.1)


def test_schedule_rejects_bad_arguments():
    with pytest.raises(ValueError):
        arrival_schedule(10, seed=0)
    with pytest.raises(ValueError):
        arrival_schedule(10, n=5, duration_s=1.0)
    with pytest.raises(ValueError):
        arrival_schedule(10, n=5, burstiness=0.5)  # poisson has no burstiness
    with pytest.raises(ValueError):
        arrival_schedule(0, n=5)


# --- the real-time server driver -------------------------------------------------------------

SERVICE_S = 0.020


def slow_serve(indices):
    time.sleep(SERVICE_S)


def test_latency_counts_queueing_from_scheduled_arrival():
    # 100 qps of arrivals into a server that needs 20 ms each: the queue grows.
    schedule = np.arange(40) * 0.010
    records = run_server(schedule, slow_serve, BatchingPolicy("single"))
    assert [r["index"] for r in records] == list(range(40))
    assert all(r["batch_size"] == 1 for r in records)
    for r in records:
        assert r["start_s"] >= r["scheduled_s"]
        assert r["latency_s"] == pytest.approx(r["done_s"] - r["scheduled_s"])
        assert r["service_s"] >= SERVICE_S * 0.99
    lat = [r["latency_s"] for r in records]
    # request i cannot start before (i) services have finished: latency >= (i + 1) * 20 ms - i * 10 ms
    for i in (10, 20, 39):
        assert lat[i] >= (i + 1) * SERVICE_S - i * 0.010 - 1e-3
        assert lat[i] > SERVICE_S * 2
    assert np.mean(lat[30:]) > np.mean(lat[:10])
    s = summarize_server(records, latency_bound_s=0.1, duration_s=None, target_qps=100)
    assert s["completed"] == 40 and not s["constraints_met"]
    assert s["goodput_per_s"] < s["completed_per_s"]
    assert s["latency_ms"]["p99"] > s["latency_ms"]["p50"]


def test_dynamic_batching_forms_bounded_batches_under_load():
    schedule = np.arange(40) * 0.005  # 200 qps into 20 ms batches
    seen = []

    def serve(indices):
        seen.append(list(indices))
        time.sleep(SERVICE_S)

    records = run_server(schedule, serve, BatchingPolicy("dynamic", max_batch_size=4, max_wait_s=0.002))
    sizes = [len(b) for b in seen]
    assert max(sizes) == 4 and all(1 <= s <= 4 for s in sizes)
    assert sum(sizes) == 40
    assert [i for b in seen for i in b] == list(range(40))  # FIFO
    assert all(r["batch_size"] == len(seen[r["batch_id"]]) for r in records)
    s = summarize_server(records)
    assert s["batch_size_mean"] > 1 and s["batch_size_max"] == 4


def test_dynamic_batching_waits_for_stragglers_up_to_max_wait():
    # Two requests 30 ms apart, max wait 100 ms: they go out together, at the second arrival.
    seen = []
    records = run_server([0.0, 0.03], lambda idx: seen.append(list(idx)),
                         BatchingPolicy("dynamic", max_batch_size=2, max_wait_s=0.1))
    assert seen == [[0, 1]]
    assert records[0]["start_s"] >= 0.03
    # With max_wait 0 the first is served alone at once.
    seen.clear()
    run_server([0.0, 0.03], lambda idx: seen.append(list(idx)), BatchingPolicy("dynamic", 2, 0.0))
    assert seen == [[0], [1]]


def test_generative_server_records_first_token_and_tpot():
    def serve(indices, on_token):
        for i in range(3):
            time.sleep(0.002)
            on_token(i)

    records = run_server(np.arange(10) * 0.01, serve, BatchingPolicy(), generative=True)
    for r in records:
        assert r["tokens"] == 3
        assert r["scheduled_s"] <= r["first_token_s"] <= r["last_token_s"] <= r["done_s"]
        assert r["ttft_s"] == pytest.approx(r["first_token_s"] - r["scheduled_s"])
        assert r["tpot_s"] >= 0.0015
    s = summarize_server(records, latency_bound_s=10, ttft_bound_s=10, tpot_bound_s=10)
    assert s["constraints_met"] and s["goodput_per_s"] == pytest.approx(s["completed_per_s"])
    assert s["ttft_ms"]["count"] == 10


def test_server_does_not_busy_wait():
    start = time.process_time()
    run_server([0.0, 0.3], lambda idx: None, BatchingPolicy())
    assert time.process_time() - start < 0.15  # a spin loop would burn ~0.3 s of CPU


def test_deadline_leaves_undispatched_requests_unserved():
    records = run_server(np.arange(20) * 0.01, slow_serve, BatchingPolicy(), deadline_s=0.1)
    served = [r for r in records if r["done_s"] is not None]
    assert 0 < len(served) < 20
    assert all(r["latency_s"] is None for r in records[len(served):])
    assert not summarize_server(records)["constraints_met"]


def test_find_peak_rate_bisects():
    calls = []

    def run_at(rate):
        calls.append(rate)
        return {"constraints_met": rate <= 37.0}

    rate, history = find_peak_rate(run_at, 1.0, 100.0, iterations=12, meets=lambda s: s["constraints_met"])
    assert 37.0 - 100 / 2**12 <= rate <= 37.0
    assert len(history) == 13 and history[0]["rate"] == 1.0 and 100.0 not in calls
    assert find_peak_rate(lambda r: {"constraints_met": False}, 1.0, 2.0, 3)[0] is None


# --- validity --------------------------------------------------------------------------------

def test_min_queries_match_mlperf_and_exact_binomial():
    assert min_queries_for_percentile(90) == 64 and min_queries_for_percentile(0.99) == 662
    assert min_queries_for_percentile(90, tolerated=0) == 44
    assert min_queries_for_percentile(99, tolerated=0) == 459
    assert early_stopping_rank(43, 90) is None and early_stopping_rank(44, 90) == 44
    x = np.random.default_rng(0).exponential(1.0, 2000)
    est = early_stopping_estimate(x, 90)
    assert est >= np.percentile(x, 90)
    assert early_stopping_estimate(x[:10], 90) is None


def test_validity_flags_short_run_with_reasons():
    lat = np.full(20, 0.01)
    v = check_validity(lat, duration_s=0.5, min_duration_s=60, min_queries=None, percentile=90,
                       latency_bound_s=0.05)
    assert not v["valid"]
    assert not v["checks"]["min_duration"] and not v["checks"]["min_queries"]
    assert not v["checks"]["early_stopping"] and v["checks"]["latency_constraint"]
    assert v["min_queries"] == 64
    assert any("duration" in r for r in v["reasons"]) and any("64" in r for r in v["reasons"])


def test_validity_passes_and_fails_on_the_bound():
    lat = np.random.default_rng(1).uniform(0.010, 0.020, 1000)
    ok = check_validity(lat, duration_s=70, min_duration_s=60, percentile=99, latency_bound_s=0.025)
    assert ok["valid"] and ok["reasons"] == []
    bad = check_validity(lat, duration_s=70, min_duration_s=60, percentile=99, latency_bound_s=0.015)
    assert not bad["valid"] and not bad["checks"]["latency_constraint"]


# --- greedy generation against HF generate -----------------------------------------------------

def _tiny_models():
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    return {
        "gpt2": lambda: GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=2)),
        "llama": lambda: LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                                      num_key_value_heads=2, intermediate_size=128,
                                                      vocab_size=1000)),
    }


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_greedy_generate_matches_hf_generate(arch):
    import torch

    from bench.backends.torch_generate import greedy_generate

    torch.manual_seed(0)
    model = _tiny_models()[arch]().eval()
    ids = torch.randint(0, model.config.vocab_size, (2, 10))
    mask = torch.ones_like(ids)
    calls: list[int] = []
    out = greedy_generate(model, ids, mask, 8, calls.append, "cpu")
    assert calls == list(range(8))
    ref = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, min_new_tokens=8,
                         max_new_tokens=8, pad_token_id=0)
    assert out.shape == (2, 8)
    assert torch.equal(out, ref[:, 10:])
    one: list[int] = []
    assert greedy_generate(model, ids[:1], mask[:1], 1, one.append, "cpu").shape == (1, 1) and one == [0]
