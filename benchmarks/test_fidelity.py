"""Fidelity: does the harness distort what it measures?

One shape (MiniLM, batch 8, sequence 128, torch fp32, CPU) is timed alternately by the full harness (a child
process started as `bench run` starts it, its warm-up and timed loop) and by a bare loop in this process, timed
by pytest-benchmark itself: before each block of bare queries, one harness run. Target: the harness's median
within +-5% of the bare loop's. The verdict is printed at the end of the session and fails the benchmark when
the target is missed; the bare loop's queries are what pytest-benchmark stores, the harness's median and the
ratio are in its extra_info.

    python -m pytest benchmarks/test_fidelity.py --benchmark-only [--fidelity-rounds 5] [--fidelity-iterations 64]
"""

from __future__ import annotations

import itertools
import statistics

import pytest

from bench.config import Defaults, ModelSpec, RunPoint, ScenarioSpec
from bench.hardware.machine import default_threads
from bench.isolation.isolate import run_isolated
from bench.variants.presets import resolve_variant

MODEL = ModelSpec(name="minilm-l6", source="packaged", id="all-minilm-l6-v2")
BATCH, SEQ = 8, 128
TARGET = 0.05
BARE_WARMUP = 5


def harness_samples(iterations: int, cache: str) -> list[float]:
    """One point run by the harness, as `bench run` runs it: its per-query latencies (ms)."""
    point = RunPoint(suite="fidelity", model=MODEL, task="encoder", weights="real", backend="pytorch",
                     device="cpu", variant=resolve_variant("fp32"), scenario=ScenarioSpec(name="single-stream"),
                     batch_size=BATCH, seq_len=SEQ,
                     settings=Defaults(warmup_iterations=5, warmup_s=1.0, min_iterations=iterations,
                                       min_duration_s=0.0, timeout_s=600))
    outcome = run_isolated(point.model_dump(mode="json"), cache, None, 600)
    assert outcome["status"] == "ok", f"harness run {outcome['status']}: {outcome.get('error')}"
    return outcome["metrics"]["samples_ms"]


@pytest.fixture(scope="module")
def minilm_forward():
    """The simplest honest measurement's subject: the model loaded once, one forward on a fixed batch."""
    import torch

    from bench.models.inputs import make_inputs
    from bench.models.sources import Packaged

    torch.set_num_threads(default_threads())
    try:
        torch.set_num_interop_threads(1)  # as the harness's child sets it; refused once torch ran parallel work
    except RuntimeError:
        pass
    loaded = Packaged().load(MODEL)
    arrays, _ = make_inputs(loaded.tokenizer, "encoder", BATCH, SEQ, loaded.config.vocab_size)
    inputs = {k: torch.from_numpy(v) for k, v in arrays.items()}

    def forward() -> None:
        with torch.inference_mode():
            loaded.model(**inputs)

    return forward


def test_harness_median_against_a_bare_loop(benchmark, minilm_forward, request, tmp_path, verdict):
    rounds, iterations = request.config.getoption("--fidelity-rounds"), request.config.getoption("--fidelity-iterations")
    harness: list[float] = []
    queries = itertools.count()

    def between_queries() -> None:
        """Untimed by pytest-benchmark: before each block of bare queries, one harness run, then a warm-up."""
        if next(queries) % iterations == 0:
            harness.extend(harness_samples(iterations, str(tmp_path)))
            for _ in range(BARE_WARMUP):
                minilm_forward()

    benchmark.pedantic(minilm_forward, setup=between_queries, rounds=rounds * iterations)
    bare_ms = statistics.median(benchmark.stats.stats.data) * 1e3
    harness_ms = statistics.median(harness)
    ratio = harness_ms / bare_ms
    passed = abs(ratio - 1) <= TARGET
    import torch

    benchmark.extra_info.update(harness_median_ms=harness_ms, bare_median_ms=bare_ms, ratio_of_medians=ratio,
                                verdict="PASS" if passed else "FAIL", rounds=rounds, iterations=iterations,
                                bare_threads={"intra_op": torch.get_num_threads(),
                                              "inter_op": torch.get_num_interop_threads()})
    said = (f"fidelity, MiniLM b{BATCH} s{SEQ} fp32 CPU: harness median {harness_ms:.2f} ms, bare median "
            f"{bare_ms:.2f} ms, ratio {ratio:.3f} ({ratio - 1:+.1%}) -> {'PASS' if passed else 'FAIL'} "
            f"(target within +-{TARGET:.0%}; {rounds} rounds of {iterations} queries each side)")
    verdict(said)
    assert passed, said
