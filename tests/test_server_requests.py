"""How many requests the server scenario schedules: enough for the validity rule to judge every run at every rate,
so only the latency bound and keeping up decide. No clock: a fake driver serves each scheduled request in 10 ms."""

from __future__ import annotations

import pytest

from bench.cli import main
from bench.cli._common import packaged_suites
from bench.config import load_suite
from bench.drivers.bench import BenchDriver
from bench.errors import ConfigError
from bench.measurement.schedule import arrival_schedule
from bench.measurement.timing import LoopSettings
from bench.validity import min_queries
from bench.plan import build_plan
from bench.scenarios import Workload
from bench.scenarios.serving import Server, ServerOptions

from conftest import TINY_BERT, tiny_suite

SERVICE_S = 0.010


class IdleSession:
    def run_rows(self, n: int) -> None:
        pass


@pytest.fixture
def scheduled(monkeypatch) -> list[tuple[float, int]]:
    """(rate, count) of every run the server scenario asks the driver for; each request served in SERVICE_S."""
    asked: list[tuple[float, int]] = []

    def serve_instantly(self, serve, rate_qps, count, seed, distribution, burstiness, policy, deadline_s, window=None):
        asked.append((rate_qps, count))
        return [{"scheduled_s": float(t), "start_s": float(t), "done_s": float(t) + SERVICE_S, "latency_s": SERVICE_S,
                 "queue_s": 0.0, "ttft_s": None, "batch_size": 1}
                for t in arrival_schedule(rate_qps, count, seed, distribution, burstiness)]

    monkeypatch.setattr(BenchDriver, "server", serve_instantly)
    return asked


def run_server(settings: LoopSettings, **options):
    return Server().run(IdleSession(), Workload(8, 128), settings, ServerOptions(**options))


def test_shipped_serving_suite_gives_valid_points_where_the_server_keeps_up(scheduled):
    """Defect: serving.yaml's min_iterations 459 was taken for "enough to bound p99", but the rule needs 662, and
    the scenario scheduled max(459, rate x 10 + 1) = 459: every point read "insufficient sample"."""
    path = packaged_suites()["serving"]
    plan = build_plan(load_suite(path), path)
    assert plan.points
    for point in plan.points:
        s = point.settings
        settings = LoopSettings(warmup_iterations=s.warmup_iterations, warmup_s=s.warmup_s,
                                min_iterations=s.min_iterations, min_duration_s=s.min_duration_s, seed=s.seed)
        result = Server().run(IdleSession(), Workload(point.batch_size, point.seq_len), settings,
                              ServerOptions(**point.scenario.options))
        assert result.server.validity.valid, (point.label, result.server.validity.reasons)
        assert result.sufficient


def test_every_peak_probe_schedules_enough_requests_to_be_judged(scheduled):
    """Defect: a probe scheduled max(min_iterations, rate x min_duration + 1) requests, so at p99 every probe
    below 132 qps (with the default 5 s) was "insufficient" whatever its latency: the bisection read the count,
    not the bound."""
    result = run_server(LoopSettings(warmup_iterations=1), rate_qps=20, find_peak=True)
    assert all(count >= min_queries(0.99) for _, count in scheduled)
    history = result.peak.history
    assert all(probe.meets_bound and not probe.reasons for probe in history)
    assert result.peak.rate_qps == history[-1].rate_qps > 190  # every probe kept up: the search climbed


@pytest.mark.parametrize("distribution, burstiness", [("poisson", 1.0), ("gamma", 0.5)])
def test_a_run_that_keeps_up_is_not_too_short_by_the_luck_of_its_arrivals(scheduled, distribution, burstiness):
    """Defect: at high rates the count was rate x min_duration + 1, whose random arrivals span less than the
    minimum duration about half the time, so a run that kept up read "ran 9.9 s < minimum 10 s"."""
    for seed in range(20):
        result = run_server(LoopSettings(warmup_iterations=1, min_duration_s=10.0, seed=seed), rate_qps=200,
                            distribution=distribution, burstiness=burstiness)
        assert result.server.validity.valid, (seed, result.server.validity.reasons)


def test_a_min_iterations_below_the_server_percentile_is_refused_at_plan_time(write_suite, capsys):
    """Defect: `min_iterations: 459` was accepted as enough for p99 (the rule needs 662); a suite that sets
    it too low for a scenario's percentile now fails before anything runs, with the number it needs."""
    server = {"name": "server", "options": {"percentile": 0.99}}
    path = write_suite(tiny_suite(models=[TINY_BERT], scenarios=["single-stream", server],
                                  defaults={"min_iterations": 459}))
    with pytest.raises(ConfigError) as info:
        build_plan(load_suite(path), path)
    assert info.value.key == "defaults.min_iterations"
    assert "662" in info.value.problem and "scenarios[1]" in info.value.problem and "662" in info.value.fix
    assert main(["plan", str(path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    # left out, the default (64, for single-stream's p90) stands: the server schedules what its p99 needs
    left_out = write_suite(tiny_suite(models=[TINY_BERT], scenarios=[server], defaults={}), "left-out.yaml")
    assert build_plan(load_suite(left_out), left_out).points
    enough = write_suite(tiny_suite(models=[TINY_BERT], scenarios=[{"name": "server", "options": {"percentile": 0.5}}],
                                    defaults={"min_iterations": min_queries(0.5)}), "enough.yaml")
    assert build_plan(load_suite(enough), enough).points
