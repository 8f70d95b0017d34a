"""The hardware section: the same work side by side per machine, the fastest marked and tested, prices and
energy where known, never a projection, and only when a report holds several machines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from builders import record

from bench.analysis.frame import records_frame
from bench.report.hardware import hardware_table
from bench.report.writer import build_report


def samples(median: float, seed: int, n: int = 200, cv: float = 0.03) -> list[float]:
    return list(median * (1 + cv * np.random.default_rng(seed).standard_normal(n)))


def table(records, prices=None) -> pd.DataFrame:
    df = records_frame(records)
    df.attrs["prices"] = prices or {}
    return hardware_table(df)


def test_best_machine_is_marked_and_tested():
    recs = [record(machine="slow-box", samples_ms=samples(100.0, 1)), record(machine="fast-box", samples_ms=samples(60.0, 2)),
            record(machine="slow-box", batch=1, samples_ms=samples(20.0, 3)),
            record(machine="fast-box", batch=1, samples_ms=samples(20.1, 4))]
    rows = table(recs).set_index("batch")
    assert rows.loc[8, "best"] == "fast-box" and rows.loc[8, "runner_up"] == "slow-box"
    assert rows.loc[8, "best_speedup"] == pytest.approx(100 / 60, rel=0.02)
    assert rows.loc[8, "best_speedup_sig"] == "faster"
    assert rows.loc[8, "best_speedup_ci_low"] < rows.loc[8, "best_speedup"] < rows.loc[8, "best_speedup_ci_high"]
    assert rows.loc[1, "best_speedup_sig"] == "n.s."  # 0.5% apart: a best, but not significantly
    assert rows.loc[8, "fast-box p50_ms"] == pytest.approx(60.0, rel=0.01)
    assert rows.loc[8, "slow-box p50_ms"] == pytest.approx(100.0, rel=0.01)
    assert rows.loc[8, "processes"] == "1 v 1"


def test_price_columns_only_for_priced_machines():
    recs = [record(machine="a", samples_ms=samples(100.0, 1), tput=80.0),
            record(machine="b", samples_ms=samples(50.0, 2), tput=160.0)]
    (row,) = table(recs, prices={"a": 3.6}).to_dict("records")
    assert row["a usd_per_m_inferences"] == pytest.approx(3.6 / 3600 / 80.0 * 1e6)
    assert "b usd_per_m_inferences" not in row  # no price, no column: nothing is guessed
    (row,) = table(recs, prices={"a": 3.6, "b": 14.4}).to_dict("records")
    assert row["b usd_per_m_inferences"] == pytest.approx(14.4 / 3600 / 160.0 * 1e6)
    assert row["best"] == "b"  # fastest, even though dearer per inference: both figures are shown


def test_energy_per_inference_where_measured():
    measured = {"energy": {"status": "measured", "source": "nvml", "joules_per_inference": 0.25}}
    unread = {"energy": {"status": "unavailable", "reason": "no RAPL", "joules_per_inference": 9.9}}
    recs = [record(machine="a", samples_ms=samples(100.0, 1), metrics=measured),
            record(machine="b", samples_ms=samples(90.0, 2), metrics=unread)]
    (row,) = table(recs).to_dict("records")
    assert row["a j_per_inference"] == pytest.approx(0.25)
    assert "b j_per_inference" not in row


def test_a_machine_with_two_devices_gets_a_group_per_device():
    recs = [record(machine="gpu-box", device="cpu", samples_ms=samples(100.0, 1)),
            record(machine="gpu-box", device="cuda", samples_ms=samples(10.0, 2)),
            record(machine="cpu-box", device="cpu", samples_ms=samples(80.0, 3))]
    (row,) = table(recs).to_dict("records")
    assert {"gpu-box/cpu p50_ms", "gpu-box/cuda p50_ms", "cpu-box p50_ms"} <= set(row)
    assert row["best"] == "gpu-box/cuda" and row["runner_up"] == "cpu-box"


def test_only_with_several_machines_and_never_projected(tmp_path):
    one = [record(machine="a", samples_ms=samples(100.0, 1))]
    assert table(one) is None
    work = {"flops": 10e9, "bytes": 1e9, "intensity": 10.0, "precision": "fp32", "compute_precision": "fp32"}
    two = [record(machine="a", samples_ms=samples(100.0, 1), metrics={"work": work}),
           record(machine="b", samples_ms=samples(50.0, 2), metrics={"work": work}),
           record(machine="b", model="only-on-b", samples_ms=samples(50.0, 3), metrics={"work": work})]
    md, _ = build_report(two, tmp_path, prices={"a": 1.0, "b": 2.0})
    hw = pd.read_csv(tmp_path / "hardware.csv").set_index("model")
    assert not any("project" in c for c in hw.columns)
    assert hw.loc["only-on-b", "best"] == "b" and hw.loc["only-on-b", "best_speedup_sig"] == "only one machine"
    assert md.index("## Hardware") < md.index("## Projected")  # projections keep their own section
    assert "2.00x [" in md.split("## Hardware")[1].split("##")[0]
