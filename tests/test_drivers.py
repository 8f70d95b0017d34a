"""Both traffic drivers (ours and MLPerf LoadGen) on the three patterns, against fake systems under test.

No timing assertions about the machine: the fakes sleep a fixed service time, and the checks rely only on a
sleep lasting at least as long as asked. The LoadGen cases skip cleanly when mlperf_loadgen is absent.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from bench.cli import main
from bench.config import load_suite
from bench.drivers import drivers
from bench.drivers.loadgen.driver import LoadGenDriver
from bench.drivers.loadgen.logs import LoadGenSample, check_trace_against_summary
from bench.errors import ConfigError, Unsupported
from bench.measurement.timing import LoopSettings, WindowHook
from bench.validity import min_queries
from bench.plan import build_plan
from bench.records.store import load_records

from conftest import TINY_BERT, tiny_suite
from serving_fakes import InlineSystem, requests

needs_loadgen = pytest.mark.skipif(LoadGenDriver.missing() is not None,
                                   reason=f"{LoadGenDriver.missing()}; {LoadGenDriver.install}")
DRIVERS = ["bench", pytest.param("loadgen", marks=needs_loadgen)]
SERVICE_S = 0.004
SERVICE_NS = SERVICE_S * 1e9
SETTINGS = LoopSettings(warmup_iterations=2, warmup_s=0.0, min_iterations=12, min_duration_s=0.05)


@pytest.mark.parametrize("name", DRIVERS)
def test_single_stream_times_every_query(name):
    calls: list[int] = []

    def issue():
        calls.append(1)
        time.sleep(SERVICE_S)

    timed = drivers.get(name)().single_stream(issue, SETTINGS)
    assert timed.count >= SETTINGS.min_iterations and timed.warmup_iterations >= 1
    assert len(calls) == timed.warmup_iterations + timed.count  # one call per timed query, nothing extra
    assert all(ns >= SERVICE_NS for ns in timed.samples_ns)
    assert timed.wall_ns >= sum(timed.samples_ns)  # one at a time
    assert timed.wall_ns >= SETTINGS.min_duration_s * 1e9 and not timed.stopped_by_max_duration


@pytest.mark.parametrize("name", DRIVERS)
def test_offline_serves_every_sample_in_bounded_batches(name):
    sizes: list[int] = []

    def issue_batch(n):
        sizes.append(n)
        time.sleep(SERVICE_S)

    timed = drivers.get(name)().offline(issue_batch, 4, SETTINGS)
    assert timed.batch_sizes == sizes[timed.warmup_iterations:]  # what the system ran is what was timed
    assert all(1 <= n <= 4 for n in timed.batch_sizes)
    assert timed.served == timed.samples >= SETTINGS.min_iterations * 4
    assert len(timed.batch_sizes) >= SETTINGS.min_iterations and not timed.stopped_by_max_duration
    gaps = [b - a for a, b in zip([0, *timed.completions_ns], timed.completions_ns)]
    assert all(g >= SERVICE_NS for g in gaps)  # batches run one after another, each at least one service
    assert len(timed.sample_latencies_ns()) == timed.samples


class _CountingWindow(WindowHook):
    """Counts the system's calls between the window's edges (the last window, as a meter would keep)."""

    def __init__(self, calls: list):
        self.calls, self.inside, self.closings = calls, None, 0

    def opened(self):
        self._at = len(self.calls)

    def closed(self):
        self.inside, self.closings = len(self.calls) - self._at, self.closings + 1


@pytest.mark.parametrize("name", DRIVERS)
@pytest.mark.parametrize("pattern", ["single_stream", "offline", "open_loop"])
def test_every_driver_tells_the_window_only_its_timed_traffic(name, pattern):
    """The energy meter reads its counters at the window's edges: warm-up and LoadGen's sizing runs must fall
    outside, every timed call inside."""
    calls: list[int] = []
    window = _CountingWindow(calls)

    def serve(*args):
        calls.append(1)
        time.sleep(SERVICE_S)

    driver = drivers.get(name)()
    if pattern == "single_stream":
        timed = driver.single_stream(serve, replace(SETTINGS, window=window))
        assert window.inside == timed.count
        outside = timed.warmup_iterations  # LoadGen's discarded sizing runs are counted as warm-up
    elif pattern == "offline":
        timed = driver.offline(serve, 4, replace(SETTINGS, window=window))
        assert window.inside == len(timed.batch_sizes)
        outside = timed.warmup_iterations
    else:
        system = InlineSystem()
        system.submit = lambda request, on_token, on_done, inline=system.submit: (serve(), inline(request, on_token,
                                                                                                  on_done))
        result = driver.open_loop(system, requests(10), 100.0, 3, deadline_s=30.0, window=window)
        assert window.inside == len(result.timings) == 10 and window.closings == 1
        outside = 0
    assert len(calls) == window.inside + outside


@needs_loadgen
@pytest.mark.parametrize("pattern", ["single_stream", "offline"])
def test_loadgen_raises_what_the_system_raised_and_leaves_no_logs(pattern, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # LoadGen writes its logs to the working directory unless told otherwise
    calls: list[int] = []

    def fails_after_two(*args):  # the warm-up passes, then it fails
        calls.append(1)
        if len(calls) > 2:
            raise Unsupported("no kernel for this")
        time.sleep(SERVICE_S)

    driver = LoadGenDriver()
    with pytest.raises(Unsupported, match="no kernel"):
        if pattern == "single_stream":
            driver.single_stream(fails_after_two, SETTINGS)
        else:
            driver.offline(fails_after_two, 4, SETTINGS)
    assert list(tmp_path.iterdir()) == []


def test_trace_reading_is_checked_against_loadgens_summary():
    samples = [LoadGenSample(0, 5_000_000), LoadGenSample(10, 7_000_000)]
    check_trace_against_summary(samples, {"result_min_latency_ns": 5_000_000, "result_max_latency_ns": 7_000_000})
    with pytest.raises(RuntimeError, match="result_max_latency_ns"):
        check_trace_against_summary(samples, {"result_min_latency_ns": 5_000_000, "result_max_latency_ns": 8_000_000})


def test_plan_refuses_loadgen_when_missing_with_the_install_command(write_suite, monkeypatch, capsys):
    monkeypatch.setattr(LoadGenDriver, "missing", classmethod(lambda cls: "mlperf_loadgen is not installed"))
    path = write_suite(tiny_suite(scenarios=[{"name": "offline", "options": {"driver": "loadgen"}}]))
    with pytest.raises(ConfigError) as info:
        build_plan(load_suite(path), path)
    assert info.value.key == "scenarios[0].options.driver" and info.value.fix == LoadGenDriver.install
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'pip install -e ".[loadgen]"' in err and "mlperf_loadgen" in err


@needs_loadgen
def test_suite_runs_single_stream_and_offline_through_loadgen(write_suite, tmp_path):
    """(The serving scenarios' load patterns through LoadGen come with its serving adapter.)"""
    loadgen = {"driver": "loadgen"}
    path = write_suite(tiny_suite(
        models=[TINY_BERT], quality={"enabled": False},
        scenarios=[{"name": "single-stream", "options": loadgen}, {"name": "offline", "options": loadgen}],
        defaults={"warmup_iterations": 1, "warmup_s": 0, "min_iterations": min_queries(0.5), "min_duration_s": 0.2,
                  "intra_op_threads": 1, "timeout_s": 120}))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 0
    recs = {r.config.scenario.name: r for r in load_records(out)}
    assert set(recs) == {"single-stream", "offline"}
    assert all(r.status == "ok" for r in recs.values()), [r.error for r in recs.values()]
    assert all(r.config.scenario.options["driver"] == "loadgen" for r in recs.values())
    for name in ("single-stream", "offline"):
        m = recs[name].metrics
        assert m.loop.driver == "loadgen" and m.loop.queries >= 8 and m.loop.wall_s >= 0.2
        assert m.throughput.samples_per_s > 0 and 0 < m.latency.p50_ms <= m.latency.p99_ms
    assert recs["offline"].metrics.loop.samples >= 8 * 2


@pytest.mark.parametrize("name", DRIVERS)
def test_a_slow_first_call_does_not_cut_single_stream_short(name):
    calls: list[int] = []

    def issue():  # the first call pays a one-off cost ten times the steady service time
        calls.append(1)
        time.sleep(10 * SERVICE_S if len(calls) == 1 else SERVICE_S)

    settings = LoopSettings(warmup_iterations=1, warmup_s=0.0, min_iterations=5, min_duration_s=0.3)
    timed = drivers.get(name)().single_stream(issue, settings)
    assert timed.wall_ns >= 0.3e9 and timed.count >= 5
    assert len(calls) == timed.warmup_iterations + timed.count  # a discarded sizing run is counted as warm-up


@needs_loadgen
def test_a_slow_first_batch_does_not_cut_loadgen_offline_short():
    calls: list[int] = []

    def issue_batch(n):
        calls.append(n)
        time.sleep(10 * SERVICE_S if len(calls) == 1 else SERVICE_S)

    settings = LoopSettings(warmup_iterations=1, warmup_s=0.0, min_iterations=5, min_duration_s=0.3)
    timed = LoadGenDriver().offline(issue_batch, 4, settings)
    assert timed.wall_ns >= 0.3e9 and timed.served == timed.samples
    assert len(calls) == timed.warmup_iterations + len(timed.batch_sizes)
