"""Systems under test with known behaviour, for the load generator's tests: no model, only threads and sleeps."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from bench.serving.requests import Completion, Request


@contextmanager
def running(system):
    """A started system, stopped on the way out."""
    system.start()
    try:
        yield system
    finally:
        system.stop()


def requests(count: int, output_tokens: int = 2) -> list[Request]:
    return [Request(index=i, prompt_ids=(1, 2, 3), output_tokens=output_tokens) for i in range(count)]


class PoolSystem:
    """Serves `capacity` requests at once, first come first served, each output token `per_token_s` after the
    last; fails the requests in `fail`, never answers those in `silent`, and holds every request until
    `release_at` have been submitted (None: serves at once). Counts how many it held at once."""

    engine = "fake-pool"

    def __init__(self, capacity: int = 4, per_token_s: float = 0.001, fail=(), silent=(),
                 release_at: int | None = None):
        self.max_in_flight = capacity
        self.per_token_s, self.fail, self.silent, self.release_at = per_token_s, set(fail), set(silent), release_at
        self.pool = ThreadPoolExecutor(capacity)
        self.lock = threading.Lock()
        self.released = threading.Event()
        self.held = self.most_held = 0
        self.submitted: list[int] = []

    def start(self) -> None:
        if self.release_at is None:
            self.released.set()

    def submit(self, request: Request, on_token, on_done) -> None:
        with self.lock:
            self.held += 1
            self.most_held = max(self.most_held, self.held)
        self.submitted.append(request.index)
        if len(self.submitted) == self.release_at:
            self.released.set()
        self.pool.submit(self._serve, request, on_token, on_done)

    def _serve(self, request: Request, on_token, on_done) -> None:
        self.released.wait()
        if request.index in self.silent:
            return
        produced = 0
        if request.index not in self.fail:
            for _ in range(request.output_tokens):
                time.sleep(self.per_token_s)
                on_token(1)
                produced += 1
        with self.lock:
            self.held -= 1
        on_done(Completion(produced, error="boom" if request.index in self.fail else None))

    def stop(self) -> None:
        self.released.set()
        self.pool.shutdown(wait=True, cancel_futures=True)

    def describe(self) -> dict:
        return {"implementation": "tests.serving_fakes.PoolSystem", "capacity": self.max_in_flight}


class DoubleDoneSystem:
    """Breaks the protocol: completes every request twice, synchronously."""

    engine, max_in_flight = "fake-double", None

    def submit(self, request: Request, on_token, on_done) -> None:
        on_done(Completion(0))
        on_done(Completion(0))


class InlineSystem:
    """Serves each request within `submit` itself (one token, then done), after blocking `submit_s` (which a real
    system must not): completions are queued before the generator looks again, however late it runs."""

    engine, max_in_flight = "fake-inline", None

    def __init__(self, submit_s: float = 0.0):
        self.submit_s = submit_s

    def submit(self, request: Request, on_token, on_done) -> None:
        time.sleep(self.submit_s)
        on_token(1)
        on_done(Completion(1))
