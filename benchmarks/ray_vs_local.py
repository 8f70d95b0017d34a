"""Does running through Ray distort what a point measures? (a benchmark, not a test)

The fidelity point (MiniLM, batch 8, sequence 128, torch fp32, CPU) is run alternately through the `ray`
executor (a one-node Ray cluster on this machine, or --address) and the `local` executor, each round one
fresh isolated child per executor. Target: the medians of the pooled per-query latencies within 5% of each
other. Also prints the time the Ray executor adds per point: from the task starting on the node to the
result on the driver, minus the child's own wall time (and, apart, from submission to task start).

    python benchmarks/ray_vs_local.py [--rounds 5] [--iterations 64] [--address HOST:PORT] [--json out.json]
    python benchmarks/ray_vs_local.py --tiny --rounds 1     # a smoke run with a tiny random model
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.config import SLOT_RESOURCE, Defaults, ModelSpec, RunPoint, ScenarioSpec
from bench.executors.local import Local
from bench.executors.ray.executor import Ray
from bench.hardware.machine import describe_machine
from bench.variants.presets import resolve_variant

MINILM = (ModelSpec(name="minilm", source="packaged", id="all-minilm-l6-v2"), "real", 8, 128)
TINY = (ModelSpec(name="tiny-bert", source="random", id="bert-base-uncased",
                  overrides={"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2,
                             "intermediate_size": 64}), "random", 2, 16)


def fidelity_point(tiny: bool, iterations: int) -> RunPoint:
    model, weights, batch, seq = TINY if tiny else MINILM
    return RunPoint(suite="ray-vs-local", model=model, task="encoder", weights=weights, backend="pytorch",
                    device="cpu", variant=resolve_variant("fp32"), scenario=ScenarioSpec(name="single-stream"),
                    batch_size=batch, seq_len=seq,
                    settings=Defaults(warmup_iterations=5, warmup_s=0.0 if tiny else 1.0, min_iterations=iterations,
                                      min_duration_s=0.0, timeout_s=600))


def one_point(executor, point: RunPoint, cache: Path, logs: Path) -> dict:
    """Run the point once; the samples, the child's wall time and the executor's timings around it."""
    submitted = time.time()
    (finished,) = executor.run([point], cache, logs, announce=lambda _: None)
    arrived = time.time()
    if finished.outcome["status"] != "ok":
        raise SystemExit(f"{type(executor).__name__} run {finished.outcome['status']}: {finished.outcome.get('error')}")
    task_start = finished.started.timestamp()
    return {"samples_ms": finished.outcome["metrics"]["samples_ms"], "child_wall_s": finished.wall_s,
            "start_to_result_overhead_s": arrived - task_start - finished.wall_s,
            "submit_to_start_s": task_start - submitted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=64)
    parser.add_argument("--address", help="an existing cluster (default: start a one-node cluster on this machine)")
    parser.add_argument("--tiny", action="store_true", help="smoke run: a tiny random BERT, batch 2, sequence 16")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import ray

    if args.address:
        ray.init(address=args.address, log_to_driver=False)
    else:
        ray.init(resources={SLOT_RESOURCE: 1}, include_dashboard=False, log_to_driver=False)
    point = fidelity_point(args.tiny, args.iterations)
    on_ray, local = Ray(address=args.address), Local()
    on_ray.nodes()  # the survey: refuses a node without a bench slot or with another bench than this one
    runs: dict[str, list[dict]] = {"ray": [], "local": []}
    with tempfile.TemporaryDirectory() as tmp:
        cache, logs = Path(tmp) / "cache", Path(tmp) / "logs"
        for r in range(1, args.rounds + 1):
            for name, executor in (("ray", on_ray), ("local", local)):
                runs[name].append(one_point(executor, point, cache, logs))
            ray_run, local_run = runs["ray"][-1], runs["local"][-1]
            print(f"round {r}: ray median {statistics.median(ray_run['samples_ms']):.3f} ms, local median "
                  f"{statistics.median(local_run['samples_ms']):.3f} ms; ray adds "
                  f"{ray_run['start_to_result_overhead_s'] * 1e3:.0f} ms (task start to result, beyond the child), "
                  f"{ray_run['submit_to_start_s'] * 1e3:.0f} ms submit to task start", flush=True)
    ray.shutdown()

    medians = {name: statistics.median(s for run in rs for s in run["samples_ms"]) for name, rs in runs.items()}
    ratio = medians["ray"] / medians["local"]
    verdict = "PASS" if abs(ratio - 1) <= 0.05 else "FAIL"
    overhead = statistics.median(run["start_to_result_overhead_s"] for run in runs["ray"])
    scheduling = statistics.median(run["submit_to_start_s"] for run in runs["ray"])
    _, _, batch, seq = TINY if args.tiny else MINILM
    print(f"\n{point.model.name} b{batch} s{seq} fp32 CPU: ray median {medians['ray']:.3f} ms, local median "
          f"{medians['local']:.3f} ms, ratio {ratio:.3f} ({ratio - 1:+.1%}) -> {verdict} (target within +-5%)")
    print(f"ray executor overhead per point: {overhead * 1e3:.0f} ms from task start to result on the driver beyond "
          f"the child's wall time; {scheduling * 1e3:.0f} ms from submission to task start (medians)")
    if args.json:
        args.json.write_text(json.dumps({"ratio_of_medians": ratio, "verdict": verdict, "medians_ms": medians,
                                         "overhead_s": overhead, "submit_to_start_s": scheduling, "runs": runs,
                                         "machine": describe_machine()}, indent=2))


if __name__ == "__main__":
    main()
