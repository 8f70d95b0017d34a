"""Run one point in a fresh process with a timeout, without distorting it.

Each point gets its own process, started one of two ways:
- `forkserver` (default): forked from a server process that imported torch, transformers and the harness
  once (isolation/preload.py), so a point does not pay 2-3 s of imports. The server imports nothing that
  starts a thread and runs no model; the child is still a new process with its own memory.
- `spawn`: a new interpreter per point, for comparison with the above.

The parent blocks in the kernel (`multiprocessing.connection.wait`, i.e. poll/select) on the child's
pipe and exit sentinel. It never spins: on a 2-core machine a busy-waiting parent steals a core and
doubles the child's latencies (a well-known peer's launcher does exactly that).

A child the parent kills (its timeout, or no exit after Ctrl-C) takes what it started with it: every descendant,
and the process group of each that leads a group of its own (a model server the point launched, with its workers),
so a killed point leaves no server behind.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import time
from multiprocessing import forkserver
from multiprocessing.connection import wait
from typing import Callable, Iterator, Literal

import psutil

from .child import child_main

KILL_GRACE_S = 5.0
StartMethod = Literal["forkserver", "spawn"]
PRELOAD = "bench.isolation.preload"
# the fork server's environment: numpy's OpenBLAS starts its worker threads at import unless told not to
SERVER_ENV = {"OPENBLAS_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "child did not exit"
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        hint = " (likely out of memory: the kernel's OOM killer sends SIGKILL)" if -code == signal.SIGKILL else ""
        return f"child killed by {name}{hint}"
    return f"child exited with status {code} before reporting a result"


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _context(method: StartMethod):
    ctx = mp.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload([PRELOAD])
        with _environment(SERVER_ENV):  # the server keeps the environment it starts with
            forkserver.ensure_running()
    return ctx


def _kill(proc) -> None:
    """SIGKILL the child, its descendants and the process groups they lead or joined (never this process's own):
    found before the child dies, since its orphans then belong to init and no longer show as its descendants."""
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    groups = set()
    for process in descendants:
        try:
            groups.add(os.getpgid(process.pid))
        except ProcessLookupError:
            continue
    proc.kill()
    for group in groups - {os.getpgrp()}:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    for process in descendants:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def run_isolated(point_data: dict, cache_dir: str, log_path: str | None, timeout_s: float,
                 target: Callable = child_main, start_method: StartMethod = "forkserver") -> dict:
    """Return the child's outcome dict, or a `failed`/`timeout` outcome written by the parent.

    `target` is the child's entry point; tests replace it to inject crashes and hangs.
    """
    ctx = _context(start_method)
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=(point_data, cache_dir, log_path, sender, time.time()), daemon=True)
    start = time.monotonic()
    proc.start()
    sender.close()  # the child holds the only writer: EOF on our end means it is gone
    outcome = None
    try:
        ready = wait([receiver, proc.sentinel], timeout=timeout_s)
        if receiver in ready:
            try:
                outcome = receiver.recv()
            except EOFError:
                outcome = None
        elif not ready:
            outcome = {"status": "timeout",
                       "error": f"no result within the per-run timeout of {timeout_s:g} s; child killed"}
    finally:
        if outcome is not None and outcome.get("status") == "timeout":
            _kill(proc)
        proc.join(KILL_GRACE_S)
        if proc.is_alive():
            _kill(proc)
            proc.join()
        receiver.close()
    if outcome is None:
        outcome = {"status": "failed", "error": _describe_exit(proc.exitcode)}
    outcome["child_wall_s"] = time.monotonic() - start
    if outcome.get("status") == "ok":
        outcome["provenance"]["process"] = {"start_method": start_method,
                                            "preloaded": PRELOAD if start_method == "forkserver" else None}
    return outcome
