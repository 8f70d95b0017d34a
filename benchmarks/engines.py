"""Serving engines side by side (a benchmark, not a test): single, static and continuous batching on SmolLM2-135M
(real weights, the `smollm2-135m` packaged source) in bf16, with the harness's own fidelity beside them.

The model is prepared as `bench run` prepares a point (the bf16 variant's cast, the PyTorch backend); the requests
are the serving workload's (bench/serving/workload.py): 128-token prompts of real text, outputs drawn uniformly from
8..64 tokens, EOS ignored, the same requests for every engine.

1. Engines: a closed loop of 16 users, then Poisson arrivals at `--load` times the rate the static engine served in
   its closed loop (near its capacity): output tokens/s, p99 TPOT and p99 TTFT per engine (bench/serving/metrics.py).
2. Fidelity of the load generator: each engine's output tokens/s in the 16-user closed loop of serving/loads.py
   against a plain script of its own (user threads and an Event per request, no harness) on the same engine and
   requests, alternating which goes first. Target: within 5%.
3. One user through the continuous engine against the `generate` scenario's loop (the session's own greedy
   generation with a KV cache on one 128-token prompt, in the main thread as the scenario runs it): median TPOT of
   each. On a machine shared with other work this compares thread layouts as much as engines: libgomp spin-waits
   at full count while it manages no more threads than CPUs (the main thread's team alone) and throttles its
   spinning beyond that (the engines' threads beside it), so run it on a quiet machine.

    python benchmarks/engines.py [--requests 128] [--users 16] [--load 0.9] [--rounds 2] [--json out.json]
    python benchmarks/engines.py --quick     # fewer, shorter requests: shows the script works in about a minute

The defaults take about 37 minutes on 2 CPU cores (AMD EPYC), most of it the single engine's closed loops; a
progress line per step goes to stderr. `--engines single continuous --requests 48 --rounds 3` checks the fidelity
alone in about 16. Prints a table; publish nothing measured on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

from bench.serving.engines import EngineSettings, engines
from bench.serving.loads import closed_loop, open_loop
from bench.serving.metrics import serving_metrics
from bench.serving.requests import Request
from bench.serving.workload import UniformLength, build_requests

ENGINES = ("single", "static", "continuous")
MODEL = {"name": "smollm2-135m", "source": "packaged", "id": "smollm2-135m"}
TARGET = 0.05
CACHE_DIR = Path(".cache") / "bench"  # shared with `bench run`: the dequantized SmolLM2 is cached there


def prepare_session(prompt_tokens: int, threads: int | None):
    """(session, tokenizer, machine threads) of SmolLM2 bf16 on PyTorch, prepared as `bench run` prepares a point."""
    import torch

    from bench.backends import backends
    from bench.config import Suite
    from bench.hardware.machine import default_threads
    from bench.isolation.child import load_point, run_context
    from bench.plan import build_plan
    from bench.variants.pipeline import prepare

    suite = Suite.model_validate({"name": "engines", "models": [MODEL], "variants": ["bf16"], "batch_sizes": [1],
                                  "seq_lens": [prompt_tokens], "quality": {"enabled": False},
                                  "scenarios": [{"name": "generate"}]})
    point = build_plan(suite, "benchmarks/engines.py").points[0]
    intra = threads or default_threads()
    torch.set_num_threads(intra)
    source, loaded, inputs, _ = load_point(point, CACHE_DIR)
    prepared = prepare(loaded, point.variant, backends.get("pytorch")(), inputs,
                       run_context(point, source, loaded, intra, CACHE_DIR))
    return prepared.session, loaded.tokenizer, intra


def build(engine: str, session, settings: EngineSettings):
    system = engines.get(engine)().build(session, settings)
    system.start()
    return system


def warm(system, requests: list[Request]) -> None:
    """One closed loop over a few requests, untimed: first calls, allocator growth, the continuous probe's aftermath."""
    closed_loop(system, requests, users=len(requests))


def plain_closed_loop(system, requests: list[Request], users: int) -> float:
    """Output tokens/s of `users` threads each sending its next request when its last is done: no harness, only
    the engine (submit, an Event per request) and one clock around the whole."""
    queue = iter(requests)
    lock = threading.Lock()
    produced: list[int] = []

    def user() -> None:
        while True:
            with lock:
                request = next(queue, None)
            if request is None:
                return
            done = threading.Event()
            system.submit(request, lambda n: None, lambda c: (produced.append(c.output_tokens), done.set()))
            done.wait()

    threads = [threading.Thread(target=user) for _ in range(users)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(produced) / (time.perf_counter() - start)


def fidelity(name: str, system, requests: list[Request], users: int, rounds: int) -> dict:
    """Output tokens/s of the closed loop of serving/loads.py and of the plain script, alternating who goes first;
    every run's figure is kept, so that the spread between runs of one kind shows beside the ratio."""
    harness, plain = [], []
    for round_ in range(rounds):
        for who in (("harness", "plain") if round_ % 2 == 0 else ("plain", "harness")):
            if who == "harness":
                harness.append(serving_metrics(closed_loop(system, requests, users), name).output_tokens_per_s)
            else:
                plain.append(plain_closed_loop(system, requests, users))
    ratio = statistics.median(harness) / statistics.median(plain)
    return {"engine": name, "harness_runs": harness, "plain_runs": plain,
            "harness_tokens_per_s": statistics.median(harness),
            "plain_tokens_per_s": statistics.median(plain), "ratio": ratio, "within_target": abs(ratio - 1) <= TARGET}


def generate_tpot_ms(session, new_tokens: int, runs: int) -> float:
    """Median TPOT of the `generate` scenario's loop: the session's greedy generation on its prepared prompt."""
    from bench.measurement.generation import request_timings

    tpots = []
    for _ in range(runs + 1):  # the first run warms up
        stamps: list[int] = []
        start = time.perf_counter_ns()
        session.generate(new_tokens, lambda i: stamps.append(time.perf_counter_ns()))
        tpots.append(request_timings(start, stamps, time.perf_counter_ns())["tpot_s"] * 1e3)
    return statistics.median(tpots[1:])


def progress(step: str) -> None:
    """A line on stderr per step: the full run takes tens of minutes on 2 cores, most of it the single engine."""
    print(f"[{time.strftime('%H:%M:%S')}] {step}", file=sys.stderr, flush=True)


def row(name: str, metrics) -> dict:
    return {"run": name, "output_tokens_per_s": metrics.output_tokens_per_s, "p99_tpot_ms": metrics.tpot_ms.p99,
            "p99_ttft_ms": metrics.ttft_ms.p99, "failed": metrics.failed_requests}


def print_table(title: str, rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    print(f"\n{title}")
    print("  ".join(f"{label:>{width}}" for label, _, width in columns))
    for r in rows:
        print("  ".join(f"{_cell(r.get(key)):>{width}}" for _, key, width in columns))


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value.split(":")[0]  # a stop reason's kind: over-saturated, or the deadline
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter requests (about a minute)")
    parser.add_argument("--requests", type=int, help="requests per run (default 128; quick 16)")
    parser.add_argument("--users", type=int, default=16, help="closed-loop users, and the engines' max batch")
    parser.add_argument("--prompt-tokens", type=int, help="default 128; quick 64")
    parser.add_argument("--min-output", type=int, help="default 8; quick 4")
    parser.add_argument("--max-output", type=int, help="default 64; quick 8")
    parser.add_argument("--load", type=float, default=0.9, help="open-loop rate as a fraction of static's")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="the static engine's wait for a fuller batch")
    parser.add_argument("--rounds", type=int, help="fidelity rounds, each alternating who goes first (default 2)")
    parser.add_argument("--generate-tokens", type=int, help="one-user comparison: tokens per request (32; quick 8)")
    parser.add_argument("--generate-runs", type=int, help="one-user comparison: requests each way (8; quick 3)")
    parser.add_argument("--threads", type=int, help="intra-op threads (default: the machine's, as `bench run`)")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=["static", "single", "continuous"],
                        help="in this order; the open loop's rate is a fraction of the first one's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    for key, full, quick in (("requests", 128, 16), ("prompt_tokens", 128, 64), ("min_output", 8, 4),
                             ("max_output", 64, 8), ("rounds", 2, 1), ("generate_tokens", 32, 8),
                             ("generate_runs", 8, 3)):
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)

    session, tokenizer, threads = prepare_session(args.prompt_tokens, args.threads)
    requests = build_requests(tokenizer, args.requests, args.prompt_tokens,
                              UniformLength(min=args.min_output, max=args.max_output), args.seed, ignore_eos=True)
    settings = EngineSettings(max_batch=args.users, max_wait_s=args.max_wait_ms / 1e3,
                              max_sequence_tokens=args.prompt_tokens + args.max_output)
    one_user = [Request(index=i, prompt_ids=r.prompt_ids, output_tokens=args.generate_tokens)
                for i, r in enumerate(requests[:args.generate_runs])]
    warm_up = [Request(index=r.index, prompt_ids=r.prompt_ids, output_tokens=2) for r in requests[:args.users]]
    closed_rows, open_rows, fidelity_rows, described = [], [], [], {}
    rate = continuous_tpot = None
    for name in args.engines:  # static first by default: the open loop's rate is a fraction of its own
        system = build(name, session, settings)  # one engine at a time: they share the model
        try:
            warm(system, warm_up)
            progress(f"{name}: closed loop of {args.users} users")
            closed = serving_metrics(closed_loop(system, requests, args.users), name)
            closed_rows.append(row(f"{name} · {args.users} users", closed))
            rate = rate or args.load * closed.requests_per_s
            progress(f"{name}: Poisson arrivals at {rate:.2f}/s")
            result = open_loop(system, requests, rate, args.seed, deadline_s=60 + 4 * args.requests / rate,
                               max_backlog=4 * args.users)
            open_rows.append({**row(f"{name} · Poisson {rate:.2f}/s", serving_metrics(result, name)),
                              "stopped": result.stop_reason})
            progress(f"{name}: fidelity, {args.rounds} round(s) of the harness's and the plain closed loop")
            fidelity_rows.append(fidelity(name, system, requests, args.users, args.rounds))
            if name == "continuous":
                progress("continuous: one user")
                continuous_tpot = serving_metrics(closed_loop(system, one_user, users=1), name).tpot_ms.p50
            described[name] = system.describe()
        finally:
            system.stop()
    engine_rows = closed_rows + open_rows
    progress("the generate scenario's loop, one user")
    generate_tpot = generate_tpot_ms(session, args.generate_tokens, runs=args.generate_runs)

    print(f"SmolLM2-135M bf16, PyTorch, {threads} threads; {args.requests} requests of {args.prompt_tokens} prompt "
          f"tokens and {args.min_output}..{args.max_output} output tokens (EOS ignored); max batch {args.users}")
    print_table("Engines", engine_rows, [("run", "run", 28), ("output tok/s", "output_tokens_per_s", 13),
                                         ("p99 TPOT ms", "p99_tpot_ms", 12), ("p99 TTFT ms", "p99_ttft_ms", 12),
                                         ("failed", "failed", 7), ("stopped early", "stopped", 14)])
    print_table(f"Load generator fidelity: serving/loads.py closed loop vs plain threads (target +-{TARGET:.0%})",
                fidelity_rows, [("engine", "engine", 12), ("harness tok/s", "harness_tokens_per_s", 14),
                                ("plain tok/s", "plain_tokens_per_s", 12), ("ratio", "ratio", 7),
                                ("within", "within_target", 7)])
    for r in fidelity_rows:
        print(f"  {r['engine']}: harness runs {', '.join(f'{x:.2f}' for x in r['harness_runs'])}; plain runs "
              f"{', '.join(f'{x:.2f}' for x in r['plain_runs'])} tok/s")
    if continuous_tpot is not None:
        print(f"\nOne user, {args.generate_tokens} tokens: continuous engine median TPOT {continuous_tpot:.2f} ms, "
              f"`generate` scenario loop {generate_tpot:.2f} ms (ratio {continuous_tpot / generate_tpot:.2f})")
    if args.json:
        from bench.hardware.machine import describe_machine
        from bench.records.harness import current_harness

        args.json.write_text(json.dumps({
            "machine": describe_machine()["machine_id"], "harness": current_harness().label, "threads": threads,
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "engines": engine_rows, "fidelity": fidelity_rows, "engine_descriptions": described,
            "one_user_tpot_ms": {"continuous": continuous_tpot, "generate": generate_tpot}}, indent=1, default=str))


if __name__ == "__main__":
    main()
