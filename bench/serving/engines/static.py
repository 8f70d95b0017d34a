"""`static`: the one batcher. Requests queue in arrival order; when the worker is free it takes the oldest and waits
until `max_batch` requests are waiting or `max_wait_s` has passed since that oldest one arrived, then serves what is
waiting (at most `max_batch`) as one batch: prompts padded together, one prefill, then decode steps until the
batch's longest request is done. Tokens stream per step; every request of the batch completes when the batch does,
and no request joins a running batch (that is the continuous engine). Generation requests go to the session's
`generate_batch`, embedding requests (output_tokens 0) to its `embed_batch`.

One worker thread serves; `submit` only queues. The worker blocks on the queue (never spins: 2 shared cores).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from ...errors import Unsupported
from ..requests import Completion, OnDone, OnToken, Request
from . import Engine, EngineSettings, engines


@dataclass
class _Waiting:
    request: Request
    on_token: OnToken
    on_done: OnDone
    arrived_s: float  # perf_counter at submit: the batching wait counts from the oldest request's arrival


class BatchingSystem:
    """A ServingSystem that serves a session's batches of at most `max_batch` requests (module docstring)."""

    max_in_flight = None  # the queue is unbounded: an overloaded run shows as latency, not as refusals

    def __init__(self, session: Any, engine: str, max_batch: int, max_wait_s: float):
        self.engine, self.max_batch, self.max_wait_s = engine, max_batch, max_wait_s
        self.session = session
        self.unsupported: str | None = None  # the first Unsupported a batch raised (see engines/__init__.py)
        self._queue: queue.Queue[_Waiting | None] = queue.Queue()
        self._lock = threading.Lock()  # submit and stop: nothing is queued behind the stop
        self._stopped = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._serve_forever, name=f"{self.engine}-batcher", daemon=True)
                self._thread.start()

    def submit(self, request: Request, on_token: OnToken, on_done: OnDone) -> None:
        with self._lock:
            running = self._thread is not None and not self._stopped
            if running:
                self._queue.put(_Waiting(request, on_token, on_done, time.perf_counter()))
        if not running:
            on_done(Completion(0, error="the system is not running (not started, or stopped)"))

    def stop(self) -> None:
        """Finishes the batch being served; the requests still waiting fail. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._queue.put(None)
        if self._thread is not None:
            self._thread.join()

    def describe(self) -> dict:
        return {"engine": self.engine, "implementation": f"{__name__}.{type(self).__name__}",
                "max_batch": self.max_batch, "max_wait_s": self.max_wait_s, "session": type(self.session).__name__}

    def _serve_forever(self) -> None:
        while (first := self._queue.get()) is not None:
            batch, last = self._gather(first)
            if self._stopped:
                _fail(batch, "the system stopped before serving it")
            else:
                generate = [w for w in batch if w.request.output_tokens > 0]
                embed = [w for w in batch if w.request.output_tokens == 0]
                for part, serve in ((generate, self._generate), (embed, self._embed)):
                    if part:
                        self._serve(part, serve)
            if last:
                return

    def _gather(self, first: _Waiting) -> tuple[list[_Waiting], bool]:
        """The batch that starts with `first`, and whether the stop came while waiting for it."""
        batch = [first]
        wait_until = first.arrived_s + self.max_wait_s
        while len(batch) < self.max_batch:
            left = wait_until - time.perf_counter()
            try:
                waiting = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if waiting is None:
                return batch, True
            batch.append(waiting)
        return batch, False

    def _serve(self, batch: list[_Waiting], serve) -> None:
        """Run one batch and answer each of its requests once, with the error if the session raised."""
        produced = [0] * len(batch)
        started_ns = time.perf_counter_ns()
        try:
            token_ids = serve(batch, produced)
            error = None
        except Exception as exc:  # noqa: BLE001 - the batch's requests fail with it; the engine goes on serving
            token_ids, error = None, f"{type(exc).__name__}: {exc}"
            if isinstance(exc, Unsupported) and self.unsupported is None:
                self.unsupported = str(exc)
        longest = max(len(w.request.prompt_ids) for w in batch)
        for row, waiting in enumerate(batch):
            info = {"batch_size": len(batch), "padding_tokens": longest - len(waiting.request.prompt_ids),
                    "batch_started_ns": started_ns}
            if token_ids is not None:
                info["token_ids"] = tuple(token_ids[row])
            waiting.on_done(Completion(produced[row], error=error, info=info))

    def _generate(self, batch: list[_Waiting], produced: list[int]) -> list[list[int]]:
        def on_token(row: int, count: int) -> None:
            produced[row] += count
            batch[row].on_token(count)

        requests = [w.request for w in batch]
        stop_at_eos = [not r.ignore_eos for r in requests]
        return self.session.generate_batch([r.prompt_ids for r in requests], [r.output_tokens for r in requests],
                                           on_token, stop_at_eos=stop_at_eos if any(stop_at_eos) else None)

    def _embed(self, batch: list[_Waiting], produced: list[int]) -> None:
        self.session.embed_batch([w.request.prompt_ids for w in batch])


def _fail(batch: list[_Waiting], error: str) -> None:
    for waiting in batch:
        waiting.on_done(Completion(0, error=error))


@engines.register("static")
class Static(Engine):
    name = "static"

    def build(self, session: Any, settings: EngineSettings) -> BatchingSystem:
        return BatchingSystem(session, self.name, settings.max_batch, settings.max_wait_s)
