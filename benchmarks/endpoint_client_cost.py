"""What does the endpoint client itself cost? (a benchmark, not a test)

The client (bench.endpoints.client) streams from the null server (bench.endpoints.nullserver: every answer at
once) under seeded Poisson arrivals at increasing rates. Per rate: requests completed and failed, the CPU time of
this process per request (time.process_time over the run: the client's event-loop thread, the arrival thread and
the callbacks; the server is another process), how late the arrival thread submitted, and TTFT and E2E from the
scheduled arrival, which against a null server are the client's own latency. A rate is sustained when every
request completed without error and the last completion came within --max-lag-s of the last arrival; the
sustainable rate is the highest sustained one, and the run stops at the first rate that is not.

The token counter is one token per word; a real tokenizer adds its own cost per chunk (two counts of at most
64 characters and the chunk). The server shares the machine's cores: run this on a quiet machine, ideally with
the server and this process on different cores (--url to a server started apart, under taskset).

    python benchmarks/endpoint_client_cost.py [--rates 50 100 200 400 800 1600] [--duration 10]
        [--output-tokens 64] [--api completions|chat] [--url URL] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from bench.endpoints.client import EndpointClient, EndpointSettings
from bench.endpoints.launch import LaunchedServer, LaunchSpec
from bench.measurement.schedule import arrival_schedule
from bench.serving.requests import Completion, Request

WARMUP_REQUESTS = 10
PROMPT = "the quick brown fox jumps over the lazy dog " * 8


def words(text: str) -> int:
    return len(text.split())


def requests(count: int, output_tokens: int) -> list[Request]:
    return [Request(index=i, prompt_ids=tuple(range(72)), output_tokens=output_tokens, prompt_text=PROMPT)
            for i in range(count)]


def percentiles_ms(values_ns: list[int]) -> dict:
    if not values_ns:
        return {}
    p50, p99 = np.percentile(np.array(values_ns) / 1e6, [50, 99])
    return {"p50": round(float(p50), 3), "p99": round(float(p99), 3)}


def warm_up(client: EndpointClient, output_tokens: int) -> None:
    """Open connections and let the server's first answers pass before any clock starts."""
    done: queue.Queue = queue.Queue()
    for req in requests(WARMUP_REQUESTS, output_tokens):
        client.submit(req, lambda n: None, done.put)
    for _ in range(WARMUP_REQUESTS):
        completion = done.get(timeout=60)
        if completion.error:
            raise SystemExit(f"warm-up request failed: {completion.error}")


def one_rate(settings: EndpointSettings, rate: float, duration_s: float, output_tokens: int, seed: int,
             max_lag_s: float) -> tuple[dict, dict]:
    """The step's figures, and the client's description (token counts, dropped fields) after it."""
    count = max(1, round(rate * duration_s))
    offsets_ns = (arrival_schedule(rate, count, seed) * 1e9).astype(np.int64)
    work = requests(count, output_tokens)
    first_token = [0] * count
    done_ns = [0] * count
    errors: list[str | None] = [None] * count
    finished: queue.Queue = queue.Queue()

    def on_token(index: int):
        def record(n: int) -> None:
            if not first_token[index]:
                first_token[index] = time.perf_counter_ns()
        return record

    def on_done(index: int):
        def record(completion: Completion) -> None:
            done_ns[index] = time.perf_counter_ns()
            errors[index] = completion.error
            finished.put(index)
        return record

    client = EndpointClient(settings, words)
    client.start()
    try:
        warm_up(client, output_tokens)
        cpu_start = time.process_time()
        start_ns = time.perf_counter_ns() + 10_000_000
        sent_ns = []
        for req, offset in zip(work, offsets_ns):
            wait_ns = start_ns + offset - time.perf_counter_ns()
            if wait_ns > 0:
                time.sleep(wait_ns / 1e9)
            sent_ns.append(time.perf_counter_ns())
            client.submit(req, on_token(req.index), on_done(req.index))
        deadline = time.monotonic() + max(5.0, duration_s)
        completed = 0
        while completed < count and time.monotonic() < deadline:
            try:
                finished.get(timeout=max(0.0, deadline - time.monotonic()))
                completed += 1
            except queue.Empty:
                break
        cpu_s = time.process_time() - cpu_start
        described = client.describe()
    finally:
        client.stop()          # what is still in flight ends with an error
    scheduled = [start_ns + int(offset) for offset in offsets_ns]
    served = [i for i in range(count) if done_ns[i] and errors[i] is None]
    failed = sum(1 for error in errors if error)
    lag_s = (max(done_ns) - scheduled[-1]) / 1e9 if completed == count else None
    return {
        "rate": rate, "requests": count, "completed": completed, "errors": failed,
        "sustained": completed == count and failed == 0 and lag_s is not None and lag_s <= max_lag_s,
        "cpu_s_per_request": cpu_s / count, "cpu_s": cpu_s,
        "last_completion_lag_s": lag_s,
        "submit_late_ms": percentiles_ms([sent - due for sent, due in zip(sent_ns, scheduled)]),
        "ttft_ms": percentiles_ms([first_token[i] - scheduled[i] for i in served if first_token[i]]),
        "e2e_ms": percentiles_ms([done_ns[i] - scheduled[i] for i in served]),
        "first_error": next((error for error in errors if error), None),
    }, described


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[50, 100, 200, 400, 800, 1600])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of arrivals per rate")
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--api", choices=["completions", "chat"], default="completions")
    parser.add_argument("--max-lag-s", type=float, default=0.5,
                        help="a rate is sustained when the last completion comes this soon after the last arrival")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--url", help="a null server already running (default: launch one on a free port)")
    parser.add_argument("--json", type=Path, help="write the steps and the client's description here")
    args = parser.parse_args()

    launched = None if args.url else LaunchedServer(
        LaunchSpec(command=f"{sys.executable} -m bench.endpoints.nullserver --port {{port}}", timeout_s=60),
        Path(tempfile.mkdtemp(prefix="nullserver-")) / "server.log", progress=lambda line: print(line, flush=True))
    steps, described = [], None
    with launched or nullcontext():
        settings = EndpointSettings(url=args.url or launched.url, model="null", api=args.api)
        for rate in sorted(args.rates):
            step, described = one_rate(settings, rate, args.duration, args.output_tokens, args.seed, args.max_lag_s)
            steps.append(step)
            print(f"{rate:>8g} req/s: {step['completed']}/{step['requests']} completed, {step['errors']} failed, "
                  f"{step['cpu_s_per_request'] * 1e3:.3f} ms CPU per request, TTFT {step['ttft_ms']}, "
                  f"E2E {step['e2e_ms']}, {'sustained' if step['sustained'] else 'NOT sustained'}", flush=True)
            if not step["sustained"]:
                break
    sustained = [step["rate"] for step in steps if step["sustained"]]
    print(f"sustainable rate: {max(sustained) if sustained else 'none of those tried'} req/s "
          f"({args.output_tokens} output tokens, {args.api})")
    if args.json:
        args.json.write_text(json.dumps({"client": described, "server": launched.record if launched else None,
                                         "sustainable_rate": max(sustained) if sustained else None,
                                         "output_tokens": args.output_tokens, "steps": steps}, indent=1))


if __name__ == "__main__":
    main()
