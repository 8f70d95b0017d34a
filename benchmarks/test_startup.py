"""Per-point start-up cost: a point's wall time outside its scenario window (process start, imports, model load,
transforms), for the two ways `bench run` starts a point's process: forked from a server that imported torch once
(the default) or a new interpreter (`--start-method spawn`).

    python -m pytest benchmarks/test_startup.py --benchmark-only

A tiny random BERT with a few queries, so the scenario window is milliseconds and the wall time pytest-benchmark
stores is nearly all start-up. The figures from the records (overhead = wall - scenario window, and the process
start alone) are in extra_info and printed at the end of the session.
"""

from __future__ import annotations

import statistics
import time

import pytest

from bench.config import Suite
from bench.hardware.machine import describe_machine
from bench.plan import build_plan
from bench.records.build import make_record, now
from bench.isolation.isolate import run_isolated

ROUNDS = 5
TINY_BERT = {"name": "tiny-bert", "source": "random", "id": "bert-base-uncased",
             "overrides": {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2,
                           "intermediate_size": 64}}
SUITE = {"name": "start-up", "models": [TINY_BERT], "batch_sizes": [1], "seq_lens": [16], "quality": {"enabled": False},
         "defaults": {"warmup_iterations": 1, "warmup_s": 0.0, "min_iterations": 5, "min_duration_s": 0.0,
                      "intra_op_threads": 1}}


@pytest.mark.benchmark(group="point start-up")
@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_point_start_up(benchmark, start_method, tmp_path, verdict):
    (point,) = build_plan(Suite.model_validate(SUITE), "start-up").points
    machine = describe_machine()
    records = []

    def one_point() -> None:
        started, t0 = now(), time.monotonic()
        outcome = run_isolated(point.model_dump(mode="json"), str(tmp_path), None, 120, start_method=start_method)
        records.append(make_record(point, outcome, machine, started, time.monotonic() - t0, "start-up"))

    benchmark.pedantic(one_point, rounds=ROUNDS, warmup_rounds=1)  # the warm-up round starts the fork server
    measured = records[1:]
    assert [r.status for r in measured] == ["ok"] * ROUNDS, [r.error for r in measured]
    overhead = statistics.median(r.phases.overhead_s for r in measured)
    start = statistics.median(r.phases.start_s for r in measured)
    scenario = statistics.median(r.phases.scenario_s for r in measured)
    benchmark.extra_info.update(start_method=start_method, overhead_s=overhead, process_start_s=start,
                                scenario_s=scenario)
    verdict(f"point start-up, {start_method}: {overhead:.2f} s outside the scenario window (median of {ROUNDS}), "
            f"of which process start {start:.2f} s; scenario window {scenario * 1e3:.0f} ms")
