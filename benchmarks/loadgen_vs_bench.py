"""LoadGen vs our scheduler (a benchmark, not a test): the same point under the same seeded load, driven by
MLPerf LoadGen and by bench's own driver, side by side.

Every run is a RunPoint from a suite, through the isolated runner, exactly as `bench run` does it: a spawned
child loads the model, warms up and hands the session to the scenario, whose `driver` option picks the
traffic generator. Server: the same target rate, requests, seed and engine for both drivers (the arrival
instants differ: LoadGen draws its own Poisson schedule from the seed). Single-stream: the same
minimum count and duration. Rounds alternate which driver goes first, so drift on the machine is shared.

    python benchmarks/loadgen_vs_bench.py [--rate 20] [--engine static] [--rounds 3] [--json out.json]
    python benchmarks/loadgen_vs_bench.py --tiny    # a random tiny BERT in seconds: shows the script works
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from bench.config import Suite
from bench.errors import ConfigError
from bench.hardware.machine import describe_machine
from bench.plan import build_plan
from bench.isolation.isolate import run_isolated

DRIVERS = ("bench", "loadgen")
MINILM = {"name": "minilm-l6", "source": "packaged", "id": "all-minilm-l6-v2"}
TINY_BERT = {"name": "tiny-bert", "source": "random", "id": "bert-base-uncased",
             "overrides": {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2,
                           "intermediate_size": 64}}
# what each row reads from a run's metrics, by scenario
ROWS = {
    "single-stream": [("single-stream p50 (ms)", lambda m: m["latency"]["p50_ms"]),
                      ("single-stream p90 (ms)", lambda m: m["latency"]["p90_ms"]),
                      ("single-stream samples/s", lambda m: m["throughput"]["samples_per_s"]),
                      ("single-stream queries", lambda m: m["loop"]["queries"])],
    "server": [("server E2E p50 (ms)", lambda m: m["serving"]["e2e_ms"]["p50"]),
               ("server E2E p99 (ms)", lambda m: m["serving"]["e2e_ms"]["p99"]),
               ("server requests/s", lambda m: m["serving"]["requests_per_s"]),
               ("server requests failed", lambda m: m["serving"]["failed_requests"]),
               ("server requests", lambda m: m["serving"]["requests"])],
}


def suite(args) -> dict:
    server = {"rate_qps": args.rate, "engine": args.engine, "max_wait_ms": args.max_wait_ms,
              "slo": {"e2e_ms": {"p99": args.latency_bound_ms}}}
    return {"name": "loadgen-vs-bench", "models": [TINY_BERT if args.tiny else MINILM], "backends": [args.backend],
            "batch_sizes": [args.batch], "seq_lens": [args.seq], "quality": {"enabled": False},
            "scenarios": [{"name": name, "options": {"driver": driver, **(server if name == "server" else {})}}
                          for name in ROWS for driver in DRIVERS],
            "defaults": {"warmup_iterations": args.warmup, "warmup_s": args.warmup_s, "seed": args.seed,
                         "min_iterations": args.min_iterations, "min_duration_s": args.min_duration,
                         "intra_op_threads": args.threads, "timeout_s": args.timeout}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a random tiny BERT and short runs (a smoke run)")
    parser.add_argument("--backend", default="pytorch")
    parser.add_argument("--batch", type=int, help="query batch (single-stream); largest batch (server)")
    parser.add_argument("--seq", type=int)
    parser.add_argument("--rate", type=float, help="server arrivals per second")
    parser.add_argument("--engine", choices=["single", "static", "continuous"], default="static")
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--latency-bound-ms", type=float, default=130.0)
    parser.add_argument("--min-iterations", type=int)
    parser.add_argument("--min-duration", type=float, help="seconds")
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--warmup-s", type=float)
    parser.add_argument("--threads", type=int, help="intra-op threads (default: the machine's, as `bench run`)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    for key, full, tiny in (("batch", 8, 2), ("seq", 128, 16), ("rate", 20.0, 40.0), ("min_iterations", 64, 16),
                            ("min_duration", 10.0, 0.5), ("warmup", 5, 1), ("warmup_s", 1.0, 0.0),
                            ("threads", None, 1)):
        if getattr(args, key) is None:
            setattr(args, key, tiny if args.tiny else full)

    try:
        plan = build_plan(Suite.model_validate(suite(args)), "<loadgen_vs_bench>")
    except ConfigError as exc:  # e.g. LoadGen not installed: the message carries the install command
        raise SystemExit(f"error: {exc}") from None
    points = {(p.scenario.name, p.scenario.options["driver"]): p for p in plan.points}
    p = next(iter(points.values()))
    label = f"{p.model.name} · {p.backend} · {p.device} · {p.variant.name} · b{p.batch_size} s{p.seq_len}"
    print(f"{label}: server {args.rate:g} req/s, engine {args.engine} batching up to {args.batch} "
          f"(wait {args.max_wait_ms:g} ms), seed {args.seed}; {args.rounds} round(s), drivers alternating")
    runs: dict[tuple[str, str], list[dict]] = {key: [] for key in points}
    with tempfile.TemporaryDirectory() as cache:
        for r in range(args.rounds):
            for scenario in ROWS:
                for driver in (DRIVERS if r % 2 == 0 else DRIVERS[::-1]):
                    outcome = run_isolated(points[scenario, driver].model_dump(mode="json"), cache, None, args.timeout)
                    if outcome["status"] != "ok":
                        raise SystemExit(f"{scenario} with driver {driver}: {outcome['status']}: {outcome.get('error')}")
                    runs[scenario, driver].append(outcome["metrics"])

    table = {}
    print(f"\n{'median over rounds':28} {'bench':>12} {'loadgen':>12}")
    for scenario, rows in ROWS.items():
        for name, read in rows:
            values = {d: [read(m) for m in runs[scenario, d]] for d in DRIVERS}
            table[name] = values
            print(f"{name:28} " + " ".join(f"{statistics.median(values[d]):12.3f}" for d in DRIVERS))
    scheduled = {d: runs["server", d][0]["serving"]["requests"] for d in DRIVERS}
    print(f"\nserver requests scheduled per run: {scheduled}; latency from the scheduled arrival for both drivers")
    if args.json:
        args.json.write_text(json.dumps({"point": label, "args": vars(args) | {"json": str(args.json)},
                                         "per_round": table, "machine": describe_machine()}, indent=2))


if __name__ == "__main__":
    main()
