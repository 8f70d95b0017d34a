"""Generation timing, arrival schedules, validity, and greedy decoding.

No timing assertions about the machine: fake servers sleep a fixed service time, and the checks
only rely on a sleep lasting at least as long as asked.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.measurement.generation import request_timings, summarize_generation
from bench.measurement.schedule import arrival_schedule
from bench.validity import check_validity, conservative_percentile

MS = 1_000_000  # ns


# --- generation arithmetic -------------------------------------------------------------------

def test_request_timings_on_known_timestamps():
    # start 0; tokens at 100, 110, 125, 135 ms; generate returns at 140 ms
    r = request_timings(0, [100 * MS, 110 * MS, 125 * MS, 135 * MS], 140 * MS)
    assert r["tokens"] == 4
    assert r["ttft_s"] == pytest.approx(0.100)
    assert r["latency_s"] == pytest.approx(0.140)
    assert r["tpot_s"] == pytest.approx((0.140 - 0.100) / 3)  # (latency - TTFT) / (tokens - 1)
    assert r["itl_s"] == pytest.approx([0.010, 0.015, 0.010])


def test_single_token_has_no_tpot():
    r = request_timings(0, [50 * MS], 60 * MS)
    assert r["tpot_s"] is None and r["itl_s"] == []
    s = summarize_generation([r] * 3, 1, 4)
    assert s.tpot is None and s.throughput.decode_tokens_per_s is None
    assert s.ttft.p50_ms == pytest.approx(50.0)


def test_summarize_generation_percentiles_and_throughput():
    reqs = [request_timings(0, [(10 + k) * MS, (20 + k) * MS, (30 + k) * MS], (30 + k) * MS) for k in range(5)]
    s = summarize_generation(reqs, 4, 5)
    assert s.ttft.p50_ms == pytest.approx(12.0) and s.ttft.mean_ms == pytest.approx(12.0)
    assert s.tpot.p99_ms == pytest.approx(10.0)
    assert s.itl.count == 10
    assert s.e2e.p50_ms == pytest.approx(32.0)
    mean_e2e = 0.032
    assert s.throughput.output_tokens_per_s == pytest.approx(4 * 3 / mean_e2e)
    assert s.throughput.total_tokens_per_s == pytest.approx(4 * (5 + 3) / mean_e2e)
    assert s.throughput.decode_tokens_per_s == pytest.approx(4 / 0.010)


# --- arrival schedules -----------------------------------------------------------------------

def test_schedule_is_reproducible_from_its_seed():
    a = arrival_schedule(50, 200, 7)
    assert np.array_equal(a, arrival_schedule(50, 200, 7))
    assert not np.array_equal(a, arrival_schedule(50, 200, 8))
    assert len(a) == 200 and np.all(np.diff(a) >= 0)
    g = arrival_schedule(50, 200, 7, "gamma", 0.5)
    assert np.array_equal(g, arrival_schedule(50, 200, 7, "gamma", 0.5))


@pytest.mark.parametrize("distribution,burstiness", [("poisson", 1.0), ("gamma", 0.25), ("gamma", 4.0)])
def test_schedule_empirical_rate(distribution, burstiness):
    a = arrival_schedule(200, 50_000, 1, distribution, burstiness)
    assert len(a) / a[-1] == pytest.approx(200, rel=0.03)


def test_gamma_burstiness_raises_interval_cv():
    def cv(x):
        gaps = np.diff(x)
        return gaps.std() / gaps.mean()

    poisson = cv(arrival_schedule(100, 20_000, 3))
    bursty = cv(arrival_schedule(100, 20_000, 3, "gamma", 0.25))
    smooth = cv(arrival_schedule(100, 20_000, 3, "gamma", 4.0))
    assert poisson == pytest.approx(1.0, abs=0.05)
    assert bursty == pytest.approx(2.0, rel=0.1) and bursty > poisson > smooth  # CV = 1/sqrt(shape)
    assert smooth == pytest.approx(0.5, rel=0.1)


# --- the server scenario's traffic (a driver's open loop into the single or static engine) --------

SERVICE_S = 0.020


# --- validity --------------------------------------------------------------------------------

def test_conservative_percentile_bounds_the_quantile():
    # the smallest n whose maximum bounds the p90 at 99% confidence is ln(0.01) / ln(0.9), rounded up: 44
    x = np.random.default_rng(0).exponential(1.0, 2000)
    assert conservative_percentile(x, 0.90) >= np.percentile(x, 90)
    assert conservative_percentile(x[:43], 0.90) is None and conservative_percentile(x[:44], 0.90) == x[:44].max()


def test_validity_flags_short_run_with_reasons():
    v = check_validity(list(np.full(20, 0.01)), 0.5, 60.0, 64, 0.90, 0.05)
    assert not v["valid"]
    assert not v["checks"]["min_duration"] and not v["checks"]["min_queries"]
    assert v["tolerance"] == 1
    assert len(v["reasons"]) >= 2


def test_validity_passes_and_fails_on_the_bound():
    lat = list(np.random.default_rng(1).uniform(0.010, 0.020, 1000))
    assert check_validity(lat, 70.0, 60.0, 662, 0.99, 0.025)["valid"]
    bad = check_validity(lat, 70.0, 60.0, 662, 0.99, 0.015)
    assert not bad["valid"] and bad["reasons"]


# --- greedy generation against HF generate -----------------------------------------------------

def _tiny(arch: str):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    if arch == "gpt2":
        return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=2))
    return LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                        num_key_value_heads=2, intermediate_size=128, vocab_size=1000))


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_greedy_generate_matches_hf_generate(arch):
    import torch

    from bench.backends.pytorch.generate import greedy_generate

    torch.manual_seed(0)
    model = _tiny(arch).eval()
    ids = torch.randint(0, model.config.vocab_size, (2, 10))
    mask = torch.ones_like(ids)
    calls: list[int] = []
    out = greedy_generate(model, ids, mask, 8, calls.append, "cpu")
    assert calls == list(range(8))
    ref = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, min_new_tokens=8,
                         max_new_tokens=8, pad_token_id=0)
    assert out.shape == (2, 8) and torch.equal(out, ref[:, 10:])
    one: list[int] = []
    assert greedy_generate(model, ids[:1], mask[:1], 1, one.append, "cpu").shape == (1, 1) and one == [0]
