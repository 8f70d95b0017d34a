"""Systems under test with known behaviour, for the load generator's and the serving scenarios' tests: no model, only
threads and sleeps."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from bench.serving.engines import Engine, engines
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
    last (an embedding request: `per_request_s`); fails the requests in `fail`, never answers those in `silent`,
    and holds every request until `release_at` have been submitted (None: serves at once). Counts how many it held
    at once; every completion carries `info`."""

    engine = "fake-pool"

    def __init__(self, capacity: int = 4, per_token_s: float = 0.001, fail=(), silent=(),
                 release_at: int | None = None, per_request_s: float = 0.0, info: dict | None = None):
        self.max_in_flight = capacity
        self.per_token_s, self.fail, self.silent, self.release_at = per_token_s, set(fail), set(silent), release_at
        self.per_request_s, self.info = per_request_s, dict(info or {})
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
        time.sleep(self.per_request_s)
        if request.index not in self.fail:
            for _ in range(request.output_tokens):
                time.sleep(self.per_token_s)
                on_token(1)
                produced += 1
        with self.lock:
            self.held -= 1
        on_done(Completion(produced, error="boom" if request.index in self.fail else None, info=self.info))

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


# --- engines over PoolSystem, for the serving scenarios: they ignore the model session and serve in known times ---

FAIL_EVERY = 5  # fake-failing fails requests 0, 5, 10, ...
PADDING_PER_REQUEST = 3  # the padding each fake embedding reports


class FakePoolEngine(Engine):
    """Up to the point's max batch at once, 1 ms per output token (an embedding: 1 ms, with known padding)."""

    name = "fake-pool"
    fail_every: int | None = None

    def build(self, session, settings):
        system = PoolSystem(capacity=settings.max_batch, per_token_s=0.001, per_request_s=0.001,
                            info={"padding_tokens": PADDING_PER_REQUEST},
                            fail=range(0, 100_000, self.fail_every) if self.fail_every else ())
        system.engine = self.name
        return system


class FakeFailingEngine(FakePoolEngine):
    name = "fake-failing"
    fail_every = FAIL_EVERY


class StandInEngine(FakePoolEngine):
    """Takes the name of an engine this branch may not have yet (single, static, continuous), for plan tests."""

    name = "stand-in"


FAKE_ENGINES = (FakePoolEngine, FakeFailingEngine)


def register_fakes(monkeypatch, *extra: type[Engine]) -> None:
    """The fake engines in this process's registry for the test, and served by PyTorch sessions as the plan judges
    them (monkeypatch takes them out again)."""
    from bench.backends.pytorch.eager import PyTorch

    engines.names()  # the harness's own first
    for engine in (*FAKE_ENGINES, *extra):
        monkeypatch.setitem(engines._items, engine.name, engine)
    monkeypatch.setattr(PyTorch, "engines", PyTorch.engines | {engine.name for engine in (*FAKE_ENGINES, *extra)})


def child_with_fakes(*args):
    """The point's child with the fake engines registered (the fork server's registry has only the real ones)."""
    from bench.isolation.child import child_main

    for engine in FAKE_ENGINES:
        engines.register(engine.name)(engine)
    child_main(*args)
