"""Comparing results across machines, variants and runs: the statistics on known samples, the process-level
rule, `bench compare` and its regression gate, `--repeat`, and significance on every ratio of the report."""

from __future__ import annotations

import json
import re
import shutil
import zlib
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from builders import record

from bench.cli import main
from bench.compare.stats import Run, compare
from bench.records.store import append_record, load_many, load_records, write_machine
from bench.analysis.frame import records_frame
from bench.report.writer import build_report


def samples(median: float, n: int = 200, cv: float = 0.03, seed: int = 0) -> list[float]:
    """Per-query latencies around `median` with a realistic within-process spread."""
    return list(median * (1 + cv * np.random.default_rng(seed).standard_normal(n)))


def seed_of(*parts) -> int:
    """A seed fixed by its parts (Python's str hash changes from one process to the next)."""
    return zlib.crc32("|".join(map(str, parts)).encode())


def processes(medians, seed: int = 0) -> list[Run]:
    return [Run.of(samples(m, seed=seed + i)) for i, m in enumerate(medians)]


# --- the statistics ---------------------------------------------------------------------------------

def test_identical_samples_are_not_significant():
    same = samples(100.0)
    cmp = compare([Run.of(same)], [Run.of(same)])
    assert cmp.ratio == pytest.approx(1.0) and cmp.low <= 1 <= cmp.high
    assert cmp.verdict == "n.s." and cmp.p > 0.5


@pytest.mark.parametrize("shift, verdict", [(1.2, "slower"), (1 / 1.2, "faster")])
def test_a_20_percent_shift_is_found(shift, verdict):
    cmp = compare([Run.of(samples(100.0, seed=1))], [Run.of(samples(100.0 * shift, seed=2))])
    assert cmp.verdict == verdict
    assert cmp.ratio == pytest.approx(shift, rel=0.02)
    assert cmp.low < cmp.ratio < cmp.high and not cmp.low <= 1 <= cmp.high
    assert cmp.speedup()[0] == pytest.approx(1 / cmp.ratio)


def test_a_change_below_the_minimum_effect_is_not_significant():
    """Tight samples make a 1% shift highly significant; pyperf's and asv's rule still calls it noise."""
    base, new = Run.of(samples(100.0, n=2000, cv=0.005, seed=1)), Run.of(samples(101.0, n=2000, cv=0.005, seed=2))
    assert compare([base], [new], min_effect=0.0).verdict == "slower"
    assert compare([base], [new]).verdict == "n.s."


def test_process_level_rule_overlapping_processes_are_not_significant():
    """Processes whose medians differ by a few % but overlap as processes: noise between processes.

    One process per side sees only query-to-query noise and calls the same difference significant; the
    table says so ("within process only")."""
    base_medians, new_medians = [155.0, 163.0, 171.0], [158.0, 166.0, 168.0]
    between = compare(processes(base_medians), processes(new_medians, seed=10))
    assert between.between_processes and between.processes == "3 v 3"
    assert between.verdict == "n.s."
    within = compare(processes([155.0]), processes([166.0], seed=10))
    assert not within.between_processes and within.test == "within process only"
    assert within.verdict == "slower"


def test_processes_that_separate_are_significant_between_processes():
    cmp = compare(processes([100.0, 102.0, 98.0]), processes([120.0, 122.0, 118.0], seed=10))
    assert cmp.between_processes and cmp.verdict == "slower" and cmp.p < 0.01
    assert cmp.ratio == pytest.approx(1.2, rel=0.01)


def test_the_interval_widens_with_the_spread_between_processes():
    """The hierarchical bootstrap resamples processes: scattered processes give a wider interval than
    tight ones with the same queries."""
    tight = compare(processes([100.0, 100.0, 100.0]), processes([110.0, 110.0, 110.0], seed=10))
    scattered = compare(processes([92.0, 100.0, 108.0]), processes([102.0, 110.0, 118.0], seed=10))
    assert (scattered.high - scattered.low) > 3 * (tight.high - tight.low)


def test_seeded_bootstrap_is_reproducible():
    base, new = processes([100.0, 104.0]), processes([110.0, 113.0], seed=10)
    first, again = compare(base, new), compare(base, new)
    assert (first.low, first.high) == (again.low, again.high)
    other = compare(base, new, seed=1)
    assert (other.low, other.high) != (first.low, first.high)


def test_rate_statistic_is_oriented_like_a_speedup():
    base = Run.of(samples(100.0, seed=1), rate=80.0)
    new = Run.of(samples(50.0, seed=2), rate=160.0)
    cmp = compare([base], [new], "rate")
    assert cmp.ratio == pytest.approx(2.0) and cmp.verdict == "faster"
    assert cmp.speedup() == (cmp.ratio, cmp.low, cmp.high) and cmp.low < 2.0 < cmp.high


def test_no_samples_means_no_test():
    assert compare([Run.of([])], [Run.of(samples(100.0))]) is None


# --- the report: several machines, several processes, a verdict on every ratio ------------------------

def _two_machines(root, sessions=("s",)):
    """machine-a: fp32 100 ms, bf16 50 ms; machine-b: fp32 80 ms, bf16 78 ms (not faster)."""
    for machine, fp32, bf16 in (("machine-a", 100.0, 50.0), ("machine-b", 80.0, 78.4)):
        for i, session in enumerate(sessions):
            for variant, precision, median in (("fp32", "fp32", fp32), ("bf16", "bf16", bf16)):
                append_record(root / machine / "suite", record(
                    machine=machine, variant=variant, precision=precision, session=session,
                    samples_ms=samples(median * (1 + 0.01 * i), seed=seed_of(machine, variant, i))))
        write_machine(root / machine, {"machine_id": machine, "cpu": {"model": f"{machine} cpu"}})


@pytest.mark.parametrize("machine_json", [True, False])
def test_a_tree_copied_from_elsewhere_keeps_both_machines(tmp_path, machine_json, capsys):
    """Results brought together from two machines, folders renamed, machine.json present or not: records
    are self-describing, so no row is dropped or mixed, and each machine's speedups use its own fp32."""
    _two_machines(tmp_path / "made")
    tree = tmp_path / "gathered"
    for machine, folder in (("machine-a", "box-1"), ("machine-b", "box-2")):
        shutil.copytree(tmp_path / "made" / machine, tree / folder)
        if not machine_json:
            (tree / folder / "machine.json").unlink()
    assert main(["report", str(tree), "--out", str(tmp_path / "report")]) == 0
    table = pd.read_csv(tmp_path / "report" / "comparison.csv")
    assert sorted(table["machine"]) == ["machine-a", "machine-a", "machine-b", "machine-b"]
    bf16 = table[table["variant"] == "bf16"].set_index("machine")
    assert bf16.loc["machine-a", "speedup_p50"] == pytest.approx(2.0, rel=0.02)
    assert bf16.loc["machine-a", "speedup_p50_sig"] == "faster"
    assert bf16.loc["machine-b", "speedup_p50"] == pytest.approx(80 / 78.4, rel=0.02)
    assert bf16.loc["machine-b", "speedup_p50_sig"] == "n.s."  # 2% is within the minimum effect
    hardware = pd.read_csv(tmp_path / "report" / "hardware.csv").set_index("variant")
    assert sorted(hardware.index) == ["bf16", "fp32"]  # machines named from their records, not their folders
    for machine, fp32, bf16 in (("machine-a", 100.0, 50.0), ("machine-b", 80.0, 78.4)):
        assert hardware.loc["fp32", f"{machine} p50_ms"] == pytest.approx(fp32, rel=0.02)
        assert hardware.loc["bf16", f"{machine} p50_ms"] == pytest.approx(bf16, rel=0.02)
    assert hardware.loc["fp32", "best"] == "machine-b" and hardware.loc["bf16", "best"] == "machine-a"
    assert hardware.loc["fp32", "best_speedup"] == pytest.approx(100 / 80, rel=0.02)
    assert hardware.loc["bf16", "best_speedup"] == pytest.approx(78.4 / 50, rel=0.02)
    assert set(hardware["best_speedup_sig"]) == {"faster"} and set(hardware["processes"]) == {"1 v 1"}


def test_report_over_several_dirs_and_overlapping_dirs(tmp_path):
    """`bench report A B` keeps both machines; a directory given twice (or inside another) counts once."""
    _two_machines(tmp_path, sessions=("s1", "s2"))
    out = tmp_path / "report"
    assert main(["report", str(tmp_path / "machine-a"), str(tmp_path / "machine-b"), str(tmp_path / "machine-a" / "suite"),
                 "--out", str(out)]) == 0
    table = pd.read_csv(out / "comparison.csv")
    assert sorted(set(table["machine"])) == ["machine-a", "machine-b"] and len(table) == 4
    assert set(table[table["variant"] == "bf16"]["processes"]) == {"2 v 2"}


def test_several_processes_stand_behind_one_row():
    """p50 is the mean of the processes' medians, the verdict comes from the test between processes."""
    recs = [record("base", p50=0, samples_ms=samples(m, seed=i), session=f"s{i}") for i, m in enumerate((100, 104, 96))]
    recs += [record("new", variant="bf16", precision="bf16", samples_ms=samples(m, seed=10 + i), session=f"s{i}")
             for i, m in enumerate((101, 97, 103))]
    df = records_frame(recs).set_index("point_id")
    assert df.loc["base", "p50_ms"] == pytest.approx(np.mean([np.median(samples(m, seed=i))
                                                              for i, m in enumerate((100, 104, 96))]))
    assert df.loc["new", "processes"] == "3 v 3" and df.loc["base", "processes"] == "3"
    assert df.loc["base", "speedup_p50_sig"] == "baseline"
    assert df.loc["new", "speedup_p50_sig"] == "n.s."
    assert df.loc["new", "speedup_p50_ci_low"] < 1 < df.loc["new", "speedup_p50_ci_high"]
    assert df.loc["new", "speedup_p50"] == pytest.approx(df.loc["base", "p50_ms"] / df.loc["new", "p50_ms"])


def test_records_of_another_harness_are_not_processes_of_the_newest():
    from builders import HARNESS

    older = HARNESS.model_copy(update={"source_digest": "older"})
    recs = [record("a", samples_ms=samples(150.0), harness=older, session="old"),
            record("a", samples_ms=samples(100.0), session="new")]
    row = records_frame(recs).iloc[0]
    assert row["processes"] == "1" and row["p50_ms"] == pytest.approx(100.0, rel=0.01)


def started(rec, hours: float):
    """`rec` as if it started `hours` after the builders' fixed start time."""
    return rec.model_copy(update={"started_at": rec.started_at + timedelta(hours=hours)})


def test_newest_harness_stands_behind_the_row_whatever_the_read_order(tmp_path):
    """`bench report NEW OLD` reads the newer harness's records first: the row is still the newest record's,
    and its processes are the newer harness's, not the one older record read last."""
    from builders import HARNESS

    older = HARNESS.model_copy(update={"source_digest": "older"})
    for session in ("s1", "s2"):
        append_record(tmp_path / "new", started(record("a", samples_ms=samples(100.0), session=session), 2))
    append_record(tmp_path / "old", record("a", samples_ms=samples(150.0), harness=older, session="old"))
    row = records_frame(load_many([tmp_path / "new", tmp_path / "old"])).iloc[0]
    assert row["processes"] == "2" and row["p50_ms"] == pytest.approx(100.0, rel=0.01)


def test_markdown_shows_interval_and_ns_while_csv_keeps_numbers(tmp_path):
    recs = [record("a", samples_ms=samples(100.0, seed=1)),
            record("b", variant="bf16", precision="bf16", samples_ms=samples(50.0, seed=2)),
            record("c", variant="int8", transforms=[{"name": "int8-dynamic"}], samples_ms=samples(100.5, seed=3))]
    md, _ = build_report(recs, tmp_path)
    rows = {v: next(line for line in md.splitlines() if f"| {v} " in line) for v in ("bf16", "int8")}
    assert "2.00x [" in rows["bf16"] and "n.s." not in rows["bf16"]
    assert "n.s. [" in rows["int8"]
    csv = pd.read_csv(tmp_path / "comparison.csv").set_index("variant")
    assert csv.loc["int8", "speedup_p50_sig"] == "n.s." and csv.loc["bf16", "speedup_p50_sig"] == "faster"
    assert csv.loc["bf16", "speedup_p50_ci_low"] < 2.0 < csv.loc["bf16", "speedup_p50_ci_high"]
    assert "1 v 1" in md and "within a process" in md


def test_quantized_claims_faster_only_when_significant():
    from bench.report.quantized import quantized

    breaks = {"quality": {"verdict": "breaks bound", "cosine_mean": 0.9, "within_bound": False}}
    recs = [record("a", samples_ms=samples(100.0, seed=1)),
            record("b", variant="int8", transforms=[{"name": "int8-dynamic"}], samples_ms=samples(99.5, seed=2),
                   metrics=breaks),
            record("c", variant="bf16", precision="bf16", samples_ms=samples(60.0, seed=3), metrics=breaks)]
    verdicts = quantized(records_frame(recs)).set_index("variant")["verdict"]
    assert verdicts["int8"] == "breaks quality bound"  # 0.5% faster is not a claim
    assert verdicts["bf16"] == "FASTER BUT BREAKS QUALITY BOUND"


def test_distillation_speed_ratio_carries_its_interval():
    from bench.report.distillation import distillation

    recs = [record("t", model="big", samples_ms=samples(100.0, seed=1)),
            record("s", model="small", teacher="big", samples_ms=samples(25.0, seed=2))]
    (row,) = distillation(records_frame(recs)).to_dict("records")
    assert row["speed_ratio"] == pytest.approx(4.0, rel=0.02) and row["speed_ratio_sig"] == "faster"
    assert row["speed_ratio_ci_low"] < row["speed_ratio"] < row["speed_ratio_ci_high"]
    assert row["processes"] == "1 v 1"


# --- bench compare ----------------------------------------------------------------------------------

def _side(folder, machine: str, medians: dict, sessions=("s",)):
    for i, session in enumerate(sessions):
        for variant, median in medians.items():
            append_record(folder, record(machine=machine, variant=variant, precision="fp32", session=session,
                                         samples_ms=samples(median, seed=seed_of(machine, variant, i))))


def test_compare_directories_on_known_samples(tmp_path, capsys):
    _side(tmp_path / "a", "machine-a", {"same": 100.0, "slow": 100.0, "fast": 100.0, "gone": 100.0})
    _side(tmp_path / "b", "machine-b", {"same": 100.0, "slow": 120.0, "fast": 80.0, "new": 100.0})
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "out")]) == 0
    table = pd.read_csv(tmp_path / "out" / "compare.csv").set_index("variant")
    assert table.loc["same", "verdict"] == "n.s."
    assert table.loc["slow", "verdict"] == "slower" and table.loc["slow", "time_ratio"] == pytest.approx(1.2, rel=0.02)
    assert table.loc["fast", "verdict"] == "faster"
    assert table.loc["gone", "verdict"] == "missing from NEW" and table.loc["new", "verdict"] == "only in NEW"
    assert (table["processes"].dropna() == "1 v 1").all() and set(table["test"].dropna()) == {"within process only"}
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "1.20x [" in md and "within-process noise only" in md
    printed = capsys.readouterr().out
    assert "only in NEW" in printed and "1 slower" in printed
    # a pipe gets the 120 columns, not rich's 80: each row and its interval on one line
    assert re.search(r"same · b8 s128 │.*│ \d\.\d\dx \[\d\.\d\d, \d\.\d\d\] │ n\.s\.", printed)
    assert "n.s.." not in printed


def test_fail_on_regression_exit_codes(tmp_path, capsys):
    _side(tmp_path / "a", "m", {"x": 100.0, "y": 100.0})
    _side(tmp_path / "b", "m", {"x": 110.0, "y": 100.0})
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert main(["compare", a, b, "--fail-on-regression", "5"]) == 1
    printed = capsys.readouterr().out
    assert "regression" in printed and "+10." in printed and "within process only" in printed
    assert main(["compare", a, b, "--fail-on-regression", "15"]) == 0  # 10% slower is under the gate
    assert main(["compare", b, a, "--fail-on-regression", "5"]) == 0  # faster passes
    assert main(["compare", a, str(tmp_path / "missing"), "--fail-on-regression", "5"]) == 2
    assert main(["compare", a, b, "--fail-on-regression", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "missing" in err and "--by" in err


def test_a_point_that_breaks_in_new_fails_the_gate(tmp_path, capsys):
    _side(tmp_path / "a", "m", {"x": 100.0})
    append_record(tmp_path / "b", record(machine="m", variant="x", status="failed", error="boom"))
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--fail-on-regression", "5"]) == 1
    assert "failed in NEW" in capsys.readouterr().out


def test_a_point_missing_from_new_fails_the_gate(tmp_path, capsys):
    """A benchmark that silently stops running must fail a CI gate, and the gate says which; a point only in
    NEW, or one that was not ok in BASE either, is no regression."""
    _side(tmp_path / "a", "m", {"x": 100.0, "gone": 100.0})
    append_record(tmp_path / "a", record(machine="m", variant="broken", status="failed", error="boom"))
    _side(tmp_path / "b", "m", {"x": 100.0, "new": 100.0})
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--fail-on-regression", "5"]) == 1
    regressions = [line for line in capsys.readouterr().out.splitlines() if line.startswith("regression")]
    assert len(regressions) == 1 and "gone" in regressions[0] and "missing from NEW" in regressions[0]
    _side(tmp_path / "c", "m", {"x": 100.0})
    append_record(tmp_path / "c", record(machine="m", variant="broken", status="failed", error="boom"))
    assert main(["compare", str(tmp_path / "c"), str(tmp_path / "b"), "--fail-on-regression", "5"]) == 0


def test_compare_takes_each_sides_newest_record_whatever_the_read_order(tmp_path):
    """A side read as two suite folders sorted by name: the point's newer ok run is compared, not its older
    failure read last."""
    rerun = record(machine="m", variant="x", session="rerun", samples_ms=samples(100.0))
    append_record(tmp_path / "a" / "1-rerun", started(rerun, 1))
    append_record(tmp_path / "a" / "2-first", record(machine="m", variant="x", status="failed", error="boom"))
    _side(tmp_path / "b", "m", {"x": 100.0})
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--fail-on-regression", "5",
                 "--out", str(tmp_path / "out")]) == 0
    assert pd.read_csv(tmp_path / "out" / "compare.csv")["verdict"].tolist() == ["n.s."]


def test_compare_by_machine_variant_and_run_within_one_tree(tmp_path, capsys):
    _side(tmp_path / "machine-a" / "suite", "machine-a", {"fp32": 100.0, "bf16": 50.0}, sessions=("s1", "s2", "s3"))
    _side(tmp_path / "machine-b" / "suite", "machine-b", {"fp32": 100.0, "bf16": 100.0}, sessions=("s1", "s2", "s3"))
    out = tmp_path / "out"

    assert main(["compare", "machine-a", "machine-b", "--by", "machine", "--in", str(tmp_path), "--out", str(out)]) == 0
    table = pd.read_csv(out / "compare.csv").set_index("variant")
    assert table.loc["bf16", "verdict"] == "slower" and table.loc["fp32", "verdict"] == "n.s."
    assert set(table["processes"]) == {"3 v 3"} and set(table["test"]) == {"between processes"}

    assert main(["compare", "fp32", "bf16", "--by", "variant", "--in", str(tmp_path), "--out", str(out)]) == 0
    table = pd.read_csv(out / "compare.csv").set_index("machine")
    assert table.loc["machine-a", "verdict"] == "faster" and table.loc["machine-b", "verdict"] == "n.s."

    assert main(["compare", "s1", "s2", "--by", "run", "--in", str(tmp_path), "--out", str(out)]) == 0
    table = pd.read_csv(out / "compare.csv")
    assert len(table) == 4 and set(table["processes"]) == {"1 v 1"}

    assert main(["compare", "machine-a", "machine-z", "--by", "machine", "--in", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no machine 'machine-z'" in err and "machine-a" in err and "machine-b" in err


def test_compare_needs_shared_points(tmp_path, capsys):
    _side(tmp_path / "a", "m", {"x": 100.0})
    _side(tmp_path / "b", "m", {"y": 100.0})
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert "no point was measured on both sides" in capsys.readouterr().err


# --- bench run --repeat and prices --------------------------------------------------------------------

def test_repeat_runs_round_robin_and_resume_counts_runs():
    from collections import Counter

    from bench.runner import _rounds

    class P:
        def __init__(self, point_id):
            self.point_id = point_id

    a, b = P("a"), P("b")
    assert [p.point_id for p in _rounds([a, b], 3, Counter())] == ["a", "b", "a", "b", "a", "b"]
    assert [p.point_id for p in _rounds([a, b], 3, Counter({"a": 2, "b": 3}))] == ["a"]
    assert [p.point_id for p in _rounds([a, b], 1, Counter({"a": 1}))] == ["b"]


def test_repeat_runs_each_point_in_its_own_process(write_suite, tmp_path):
    from conftest import tiny_suite

    path = write_suite(tiny_suite(models=[tiny_suite()["models"][1]]))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--repeat", "2"]) == 0
    records = load_records(out)
    assert len(records) == 2 and len({r.point_id for r in records}) == 1 and len({r.run_id for r in records}) == 2
    assert all(r.status == "ok" for r in records)
    assert pd.read_csv(out / "comparison.csv")["processes"].astype(str).tolist() == ["2"]
    assert main(["run", str(path), "--out", str(out), "--repeat", "2", "--resume"]) == 0
    assert len(load_records(out)) == 2
    assert main(["run", str(path), "--out", str(out), "--repeat", "0"]) == 2


def test_prices_from_flags_and_file(tmp_path, capsys):
    _two_machines(tmp_path / "results")
    prices = tmp_path / "prices.yaml"
    prices.write_text("machine-a: 3.6\nmachine-b: 1.0\n")
    out = tmp_path / "report"
    assert main(["report", str(tmp_path / "results"), "--prices", str(prices), "--price", "machine-b=7.2",
                 "--out", str(out)]) == 0
    hw = pd.read_csv(out / "hardware.csv").set_index("variant")
    rate = hw.loc["fp32", "machine-b samples_per_s"]
    assert hw.loc["fp32", "machine-b usd_per_m_inferences"] == pytest.approx(7.2 / 3600 / rate * 1e6)  # flag wins
    rate = hw.loc["fp32", "machine-a samples_per_s"]
    assert hw.loc["fp32", "machine-a usd_per_m_inferences"] == pytest.approx(3.6 / 3600 / rate * 1e6)
    results = str(tmp_path / "results")
    assert main(["report", results, "--price-per-hour", "2"]) == 2  # two machines: which one?
    assert main(["report", results, "--price", "machine-a"]) == 2
    assert main(["report", results, "--price", "machine-a=-1"]) == 2
    prices.write_text(json.dumps({"machine-a": "cheap"}))
    assert main(["report", results, "--prices", str(prices)]) == 2
    assert main(["report", results, "--prices", str(tmp_path / "nope.yaml")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 5 and all(line.startswith("error: ") and "fix:" in line for line in lines)


def test_price_per_hour_still_prices_a_single_machine(tmp_path):
    work = {"flops": 10e9, "bytes": 1e9, "intensity": 10.0, "precision": "fp32", "compute_precision": "fp32"}
    append_record(tmp_path, record(samples_ms=samples(100.0), metrics={"work": work}))
    assert main(["report", str(tmp_path), "--price-per-hour", "3.6"]) == 0
    row = pd.read_csv(tmp_path / "efficiency.csv").iloc[0]
    assert row["usd_per_m_inferences"] == pytest.approx(3.6 / 3600 / row["items_per_s"] * 1e6)
    assert not (tmp_path / "hardware.csv").exists()  # one machine: no hardware section
