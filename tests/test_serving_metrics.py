"""Serving metrics from timings written by hand (no clocks): every figure checked against its definition."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bench.serving.loads import Load, LoadResult, RequestTiming
from bench.serving.metrics import ServingMetrics, serving_metrics
from bench.serving.slo import Slo

MS = 1_000_000
CLOSED = Load(pattern="closed-loop", users=2)


def timing(index, sent_ms, tokens_ms, done_ms, output_tokens=None, error=None, scheduled_ms=None, counts=None):
    counts = counts or [1] * len(tokens_ms)
    return RequestTiming(index=index, sent_ns=sent_ms * MS, done_ns=None if done_ms is None else done_ms * MS,
                         token_ns=tuple((t * MS, n) for t, n in zip(tokens_ms, counts)),
                         output_tokens=sum(counts) if output_tokens is None else output_tokens, error=error,
                         scheduled_ns=None if scheduled_ms is None else scheduled_ms * MS)


def two_requests_and_a_failure() -> LoadResult:
    return LoadResult(load=CLOSED, started_ns=0, timings=[
        timing(0, 0, [10, 14, 18, 22], 22),  # TTFT 10, E2E 22, TPOT (22 - 10) / 3 = 4, ITL 4, 4, 4
        timing(1, 5, [25, 35], 35),          # TTFT 20, E2E 30, TPOT 10, ITL 10
        timing(2, 10, [], 12, output_tokens=0, error="boom"),
    ])


def test_latencies_follow_the_vllm_definitions():
    m = serving_metrics(two_requests_and_a_failure(), engine="fake")
    assert (m.ttft_ms.count, m.ttft_ms.mean, m.ttft_ms.p50, m.ttft_ms.p90, m.ttft_ms.p99) == pytest.approx(
        (2, 15, 15, 19, 19.9))
    assert (m.tpot_ms.count, m.tpot_ms.mean, m.tpot_ms.p50, m.tpot_ms.p90) == pytest.approx((2, 7, 7, 9.4))
    # ITL pools the gaps 4, 4, 4, 10: linear interpolation puts p90 at 4 + 0.7 * 6 and p99 at 4 + 0.97 * 6.
    assert (m.itl_ms.count, m.itl_ms.mean, m.itl_ms.p50, m.itl_ms.p90, m.itl_ms.p99) == pytest.approx(
        (4, 5.5, 4, 8.2, 9.82))
    assert (m.e2e_ms.count, m.e2e_ms.mean, m.e2e_ms.p99) == pytest.approx((2, 26, 29.92))


def test_throughput_counts_successful_requests_over_first_send_to_last_completion():
    m = serving_metrics(two_requests_and_a_failure(), engine="fake")
    assert m.duration_s == pytest.approx(0.035)
    assert m.requests == 3 and m.failed_requests == 1 and m.unserved_requests == 0
    assert m.output_tokens == 6
    assert m.requests_per_s == pytest.approx(2 / 0.035)
    assert m.output_tokens_per_s == pytest.approx(6 / 0.035)
    assert m.tokens_per_s_per_user == pytest.approx((1000 / 4 + 1000 / 10) / 2)
    assert m.engine == "fake" and m.load == CLOSED


def test_goodput_counts_requests_within_every_bound_and_never_a_failed_one():
    result = two_requests_and_a_failure()
    tight = serving_metrics(result, "fake", Slo(tpot_ms={"p99": 5}))
    assert tight.good_requests == 1 and tight.goodput_requests_per_s == pytest.approx(1 / 0.035)
    loose = serving_metrics(result, "fake", Slo(e2e_ms={"p99": 1000}, ttft_ms={"p90": 1000}))
    assert loose.good_requests == 2 and loose.goodput_requests_per_s == pytest.approx(2 / 0.035)
    assert serving_metrics(result, "fake").goodput_requests_per_s is None


def test_goodput_judges_itl_by_the_requests_longest_gap():
    result = two_requests_and_a_failure()
    assert serving_metrics(result, "fake", Slo(itl_ms={"p99": 9})).good_requests == 1  # request 1's gap is 10
    assert serving_metrics(result, "fake", Slo(itl_ms={"p99": 10})).good_requests == 2


def test_open_loop_latency_counts_from_the_scheduled_arrival_not_the_late_send():
    result = LoadResult(load=Load(pattern="open-loop", rate_per_s=10, seed=0), started_ns=0,
                        timings=[timing(0, 5, [10, 20], 20, scheduled_ms=2)])
    m = serving_metrics(result, "fake")
    assert m.ttft_ms.mean == pytest.approx(8) and m.e2e_ms.mean == pytest.approx(18)
    assert m.duration_s == pytest.approx(0.018)


def test_empty_token_events_do_not_count_as_the_first_token():
    result = LoadResult(load=CLOSED, started_ns=0, timings=[timing(0, 0, [3, 10, 20], 20, counts=[0, 1, 1])])
    m = serving_metrics(result, "fake")
    assert m.ttft_ms.mean == pytest.approx(10) and m.itl_ms.count == 1 and m.itl_ms.mean == pytest.approx(10)


def test_tokens_arriving_in_chunks_count_once_per_token_for_tpot_and_once_per_event_for_itl():
    result = LoadResult(load=CLOSED, started_ns=0, timings=[timing(0, 0, [10, 20], 20, counts=[1, 4])])
    m = serving_metrics(result, "fake")
    assert m.output_tokens == 5 and m.tpot_ms.mean == pytest.approx(10 / 4)
    assert m.itl_ms.count == 1 and m.itl_ms.mean == pytest.approx(10)


def test_unserved_requests_fail_and_stretch_the_duration_to_the_stop():
    result = LoadResult(load=CLOSED, started_ns=0, stopped_ns=100 * MS, stop_reason="the 0.1 s deadline passed",
                        timings=[timing(0, 0, [10, 20], 20),
                                 RequestTiming(index=1, sent_ns=1 * MS, done_ns=None, error="unserved: ...")])
    m = serving_metrics(result, "fake")
    assert m.failed_requests == 1 and m.unserved_requests == 1 and m.requests == 2
    assert m.duration_s == pytest.approx(0.1) and m.requests_per_s == pytest.approx(10)


def test_embedding_requests_have_no_ttft_or_tpot_only_end_to_end():
    result = LoadResult(load=CLOSED, started_ns=0, timings=[timing(0, 0, [], 7, output_tokens=0)])
    m = serving_metrics(result, "fake")
    assert m.ttft_ms.count == 0 and m.ttft_ms.p99 is None and m.tpot_ms.count == 0
    assert m.e2e_ms.mean == pytest.approx(7) and m.tokens_per_s_per_user is None


def test_serving_metrics_round_trip_as_strict_json():
    m = serving_metrics(two_requests_and_a_failure(), "fake", Slo(tpot_ms={"p99": 5}))
    assert ServingMetrics.model_validate_json(m.model_dump_json()) == m
    with pytest.raises(ValidationError):
        ServingMetrics.model_validate({**m.model_dump(), "surprise": 1})
    with pytest.raises(ValidationError):
        ServingMetrics.model_validate({**m.model_dump(), "requests_per_s": float("nan")})
