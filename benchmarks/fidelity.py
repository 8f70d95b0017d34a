"""Fidelity check (a benchmark, not a test): does the harness distort what it measures?

One shape (MiniLM, batch 8, sequence 128, torch fp32, CPU) is timed alternately by the full harness
(a spawned child, exactly as `bench run` does it) and by a bare `perf_counter` loop in this process.
Target: the ratio of medians is within +-5% of 1.0. For comparison, a well-known peer's default
process launcher reads +170% on a 2-core machine because its parent busy-waits.

Also prints the timed loop's own per-iteration overhead on a no-op.

    python benchmarks/fidelity.py [--rounds 5] [--iterations 64] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.config import Defaults, ModelSpec, RunPoint, ScenarioSpec
from bench.hardware.machine import default_threads, describe_machine
from bench.measurement.timing import LoopSettings, time_loop
from bench.runner.isolate import run_isolated
from bench.variants.presets import resolve_variant

MODEL = ModelSpec(name="minilm-l6", source="packaged", id="all-minilm-l6-v2")
BATCH, SEQ = 8, 128


def harness_samples(iterations: int, cache: str) -> list[float]:
    point = RunPoint(suite="fidelity", model=MODEL, task="encoder", weights="real", backend="pytorch",
                     device="cpu", variant=resolve_variant("fp32"), scenario=ScenarioSpec(name="single-stream"),
                     batch_size=BATCH, seq_len=SEQ,
                     settings=Defaults(warmup_iterations=5, warmup_s=1.0, min_iterations=iterations,
                                       min_duration_s=0.0, timeout_s=600))
    outcome = run_isolated(point.model_dump(mode="json"), cache, None, 600)
    if outcome["status"] != "ok":
        raise SystemExit(f"harness run {outcome['status']}: {outcome.get('error')}")
    return outcome["metrics"]["samples_ms"]


def bare_loop(iterations: int):
    """The simplest honest measurement: load once, then perf_counter around each forward."""
    import torch

    from bench.models.inputs import make_inputs
    from bench.models.sources import Packaged

    torch.set_num_threads(default_threads())
    torch.set_num_interop_threads(1)
    loaded = Packaged().load(MODEL)
    arrays, _ = make_inputs(loaded.tokenizer, "encoder", BATCH, SEQ, loaded.config.vocab_size)
    inputs = {k: torch.from_numpy(v) for k, v in arrays.items()}
    model = loaded.model

    def run() -> list[float]:
        with torch.inference_mode():
            for _ in range(5):
                model(**inputs)
            out = []
            for _ in range(iterations):
                t0 = time.perf_counter()
                model(**inputs)
                out.append((time.perf_counter() - t0) * 1e3)
        return out

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=64)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    overhead = time_loop(lambda: None, LoopSettings(warmup_iterations=100, warmup_s=0, min_iterations=100_000,
                                                    min_duration_s=0.2))
    loop_ns = statistics.median(overhead.samples_ns)
    print(f"timed-loop overhead on a no-op: median {loop_ns:.0f} ns per iteration")

    bare = bare_loop(args.iterations)
    harness_all, bare_all, rounds = [], [], []
    with tempfile.TemporaryDirectory() as cache:
        for r in range(1, args.rounds + 1):
            h = harness_samples(args.iterations, cache)
            b = bare()
            harness_all += h
            bare_all += b
            rounds.append({"harness_median_ms": statistics.median(h), "bare_median_ms": statistics.median(b)})
            print(f"round {r}: harness median {rounds[-1]['harness_median_ms']:.2f} ms, "
                  f"bare loop median {rounds[-1]['bare_median_ms']:.2f} ms, "
                  f"ratio {rounds[-1]['harness_median_ms'] / rounds[-1]['bare_median_ms']:.3f}")
    ratio = statistics.median(harness_all) / statistics.median(bare_all)
    verdict = "PASS" if abs(ratio - 1) <= 0.05 else "FAIL"
    print(f"\nMiniLM b{BATCH} s{SEQ} fp32 CPU: harness median {statistics.median(harness_all):.2f} ms, "
          f"bare median {statistics.median(bare_all):.2f} ms, ratio {ratio:.3f} ({ratio - 1:+.1%}) "
          f"-> {verdict} (target within +-5%)")
    if args.json:
        args.json.write_text(json.dumps({"ratio_of_medians": ratio, "verdict": verdict, "rounds": rounds,
                                         "loop_overhead_ns": loop_ns, "machine": describe_machine()}, indent=2))


if __name__ == "__main__":
    main()
