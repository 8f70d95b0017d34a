"""SLO specs and presets, and the serving validity rule on runs written by hand."""

from __future__ import annotations

import numpy as np
import pytest

from bench.errors import ConfigError
from bench.serving.loads import Load, LoadResult, RequestTiming
from bench.serving.slo import Slo, parse_slo
from bench.serving.validity import judge

MS = 1_000_000


def run(ttft_ms, count=None, tokens=3, spacing_ms=10, stopped=False, errors=()):
    """Requests sent `spacing_ms` apart, each with the given TTFT, then a token every 5 ms (TPOT 5 ms)."""
    ttft_ms = list(ttft_ms) if count is None else [ttft_ms] * count
    timings = []
    for i, ttft in enumerate(ttft_ms):
        sent = i * spacing_ms * MS
        token_ns = tuple((sent + int(ttft * MS) + k * 5 * MS, 1) for k in range(tokens))
        timings.append(RequestTiming(index=i, sent_ns=sent, done_ns=token_ns[-1][0], token_ns=token_ns,
                                     output_tokens=tokens, error="boom" if i in errors else None))
    if stopped:
        timings.append(RequestTiming(index=len(timings), sent_ns=None, done_ns=None, error="unserved: never sent"))
    return LoadResult(load=Load(pattern="closed-loop", users=1), timings=timings, started_ns=0,
                      stopped_ns=timings[-2].done_ns + MS if stopped else None,
                      stop_reason="the 9 s deadline passed" if stopped else None)


def test_slo_mapping_lists_every_bound():
    slo = parse_slo({"ttft_ms": {"p99": 2000}, "tpot_ms": {"p99": 100, "p90": 50}}, "suite.yaml")
    assert list(slo.bounds()) == [("ttft_ms", "p99", 2000), ("tpot_ms", "p99", 100), ("tpot_ms", "p90", 50)]
    assert slo.highest_percentile() == pytest.approx(0.99) and slo.preset is None


@pytest.mark.parametrize("preset, ttft, tpot", [("mlperf-llama2-70b-server", 2000, 200),
                                                ("mlperf-llama2-70b-interactive", 450, 40)])
def test_mlperf_presets_carry_loadgens_bounds(preset, ttft, tpot):
    slo = parse_slo(preset, "suite.yaml")
    assert slo.preset == preset
    assert list(slo.bounds()) == [("ttft_ms", "p99", ttft), ("tpot_ms", "p99", tpot)]


@pytest.mark.parametrize("value, key", [
    ({"ttfb_ms": {"p99": 10}}, "slo.ttfb_ms"),
    ({"ttft_ms": {"p100": 10}}, "slo.ttft_ms"),
    ({"ttft_ms": {"q99": 10}}, "slo.ttft_ms"),
    ({"ttft_ms": {"p99": -1}}, "slo.ttft_ms"),
    ({"ttft_ms": {}}, "slo.ttft_ms"),
    ({}, "slo"),
    ("mlperf-gpt5-server", "slo"),
])
def test_bad_slo_is_a_one_line_config_error(value, key):
    with pytest.raises(ConfigError) as caught:
        parse_slo(value, "suite.yaml")
    assert caught.value.file == "suite.yaml" and caught.value.key == key
    assert "\n" not in str(caught.value)


def test_a_valid_run_passes_every_check():
    verdict = judge(run(ttft_ms=50, count=700), Slo(ttft_ms={"p99": 100}, tpot_ms={"p99": 10}), min_duration_s=1,
                    min_requests=1)
    assert verdict.valid and verdict.reasons == [] and all(verdict.checks.values())
    assert [(c.metric, c.estimate_ms, c.samples, c.met) for c in verdict.slo] == [
        ("ttft_ms", pytest.approx(50), 700, True), ("tpot_ms", pytest.approx(5), 700, True)]


def test_too_few_requests_for_the_slo_percentile():
    verdict = judge(run(ttft_ms=50, count=100), Slo(ttft_ms={"p99": 100}), min_duration_s=0, min_requests=1)
    assert not verdict.valid and verdict.checks["min_requests"] is False
    assert verdict.reasons[0].startswith("100 requests < 662 needed")
    assert "100 samples are too few" in verdict.reasons[1]


def test_too_short():
    verdict = judge(run(ttft_ms=50, count=20), None, min_duration_s=5, min_requests=10)
    assert not verdict.valid and verdict.checks == {"min_requests": True, "min_duration": False, "slo": True,
                                                    "served": True, "no_failures": True}
    assert verdict.reasons[0].startswith("ran 0.2") and verdict.reasons[0].endswith("< minimum 5 s")


def test_slo_is_judged_on_the_conservative_estimate_not_the_plain_percentile():
    ttfts = np.arange(1, 701)  # plain p99 693 ms; the 99%-confidence upper bound is a higher order statistic
    assert np.percentile(ttfts, 99) <= 695
    verdict = judge(run(ttfts), Slo(ttft_ms={"p99": 695}), min_duration_s=0, min_requests=1)
    assert not verdict.valid and verdict.checks["slo"] is False
    assert verdict.slo[0].estimate_ms > 695
    assert verdict.reasons == [f"ttft_ms p99 upper bound {verdict.slo[0].estimate_ms:.1f} ms > SLO 695 ms"]


def test_unserved_and_failed_requests_make_a_run_invalid_and_say_so():
    verdict = judge(run(ttft_ms=50, count=30, stopped=True, errors={4, 9}), None, min_duration_s=0, min_requests=1)
    assert not verdict.valid
    assert verdict.checks["served"] is False and verdict.checks["no_failures"] is False
    assert verdict.reasons == ["1 of 31 requests not served: the 9 s deadline passed",
                               "2 of 31 requests failed (first: request 4: boom)"]
