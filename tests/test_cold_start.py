"""The cold-start scenario and its report section; the time-to-result (overhead) section."""

from __future__ import annotations

import time

import pytest
from builders import record

from bench.measurement.timing import LoopSettings
from bench.records.schema import Phases
from bench.report.cold_start import cold_start_figures, cold_start_table
from bench.analysis.frame import records_frame
from bench.report.overhead import overhead_table
from bench.scenarios import Workload, scenarios


class SlowStart:
    """A session whose first two queries are slow, as a lazily initialised or compiled one is."""

    def __init__(self):
        self.calls = 0

    def run(self):
        self.calls += 1
        time.sleep(0.03 if self.calls <= 2 else 0.002)


def test_cold_start_times_every_query_from_the_first_without_warm_up():
    cls = scenarios.get("cold-start")
    session = SlowStart()
    result = cls().run(session, Workload(1, 8), LoopSettings(warmup_iterations=5, warmup_s=1.0),
                       cls.Options(queries=8))
    assert session.calls == 8  # no warm-up call, whatever the suite's settings say
    assert len(result.samples_ms) == 8 and result.samples_ms[0] >= 30 and result.samples_ms[1] >= 30
    assert result.loop.warmup_iterations == 0 and result.sufficient


def test_cold_start_figures_on_known_samples():
    figures = cold_start_figures([50.0, 20.0, 10.5, 10.0, 10.0, 9.8, 10.2, 10.0])
    assert figures["first_ms"] == 50.0 and figures["steady_p50_ms"] == pytest.approx(10.0)
    assert figures["first_over_steady"] == pytest.approx(5.0)
    assert figures["steady_from_query"] == 3  # 10.5 is within 10% of 10.0; 20.0 is not
    assert cold_start_figures([5.0, 5.0, 5.0, 5.0])["steady_from_query"] == 1


def test_cold_start_section_reads_the_ordered_samples():
    rec = record("c", scenario="cold-start", samples_ms=[40.0, 12.0, 10.0, 10.0, 10.0, 10.0])
    (row,) = cold_start_table(records_frame([rec, record("s")])).to_dict("records")
    assert row["first_ms"] == 40.0 and row["steady_from_query"] == 3 and row["queries"] == 6


def test_overhead_section_adds_up_the_suite():
    phases = {"start_s": 0.1, "load_s": 0.4, "reference_s": 0.5, "transform_s": 0.0, "scenario_s": 3.0,
              "quality_s": 1.0, "overhead_s": 2.0, "overhead_fraction": 0.4}
    a = record("a").model_copy(update={"wall_s": 5.0, "phases": Phases(**phases)})
    b = record("b", variant="bf16", precision="bf16").model_copy(
        update={"wall_s": 5.0, "phases": Phases(**{**phases, "scenario_s": 4.0, "overhead_fraction": 0.2})})
    table = overhead_table(records_frame([a, b]))
    total = table.iloc[-1]
    assert total["model"] == "all points" and total["wall_s"] == 10.0
    assert total["overhead"] == pytest.approx(1 - 7.0 / 10.0)
