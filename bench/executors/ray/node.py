"""The `ray` executor, a node's side: what runs in a Ray task on a node. It describes the node to the driver, and
runs one point in the same spawned child as the local executor (`run_isolated`), with the point's thread counts
in its environment from the start: Ray gives its workers OMP_NUM_THREADS=1 (the task asks for no CPU), and
libraries the child imports before it sets its own counts would otherwise keep that 1. A point ends with its
node's raylet.

Ray is imported inside functions only: the registry imports this module where Ray is absent too.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket
import sys
import tempfile
import threading
import types
from pathlib import Path

from ...records.build import now


def node_name(node_id: str, host: str) -> str:
    """Host and node id: a host may run several raylets, and a node id alone tells an operator nothing."""
    return f"{host}/{node_id[:12]}"


def describe_node() -> dict:
    """Runs on a node: its machine description and harness, so the driver files records and refuses a
    node that runs another bench than the driver."""
    from .. import this_machine
    from ...records.harness import current_harness

    return {"machine": this_machine(), "harness": current_harness().model_dump(mode="json"),
            "host": socket.gethostname()}


def prepare_child_env(point_data: dict) -> None:
    """Put the point's thread counts in this worker's environment, which the spawned child inherits."""
    from ...hardware.machine import default_threads
    from ...isolation.child import set_thread_env

    set_thread_env(point_data["settings"].get("intra_op_threads") or default_threads())


@contextlib.contextmanager
def worker_main_hidden():
    """multiprocessing's spawn re-runs the parent's `__main__` script in the child; in a Ray worker that is
    Ray's worker script, which would import Ray into the measured process. A bare stand-in while the child
    starts keeps the child as lean as the local executor's."""
    real = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = real


@contextlib.contextmanager
def ended_with_raylet():
    """A worker whose raylet dies goes on running its task (Ray does not stop it), so the point would keep
    measuring on a node the cluster has written off, beside whatever that machine runs next. Watch the
    raylet (this worker's parent) and end the point's child and this worker with it."""
    raylet = os.getppid()
    done = threading.Event()

    def watch() -> None:
        while not done.wait(1.0):
            if os.getppid() != raylet:
                for child in multiprocessing.active_children():
                    child.kill()
                os._exit(1)

    threading.Thread(target=watch, name="bench-raylet-watch", daemon=True).start()
    try:
        yield
    finally:
        done.set()


def run_point(point_data: dict, cache_root: str, timeout_s: float):
    """Runs on a node (a Ray streaming task): first says where it runs, then sends the outcome and the log.

    Exports are cached per machine under `cache_root`, so a shared directory never hands one machine's
    builds to another.
    """
    import ray

    from .. import this_machine
    from ...isolation.isolate import run_isolated

    machine = this_machine()
    node_id = ray.get_runtime_context().get_node_id()
    yield {"node_id": node_id, "node": node_name(node_id, socket.gethostname()), "machine": machine, "started": now()}
    prepare_child_env(point_data)
    with tempfile.TemporaryDirectory(prefix="bench-point-") as tmp:
        log = Path(tmp) / "point.log"
        with worker_main_hidden(), ended_with_raylet():
            # spawn, not the fork server: the child must start from the environment set just above
            outcome = run_isolated(point_data, str(Path(cache_root) / machine["machine_id"]), str(log), timeout_s,
                                   start_method="spawn")
        log_text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else None
    yield {"outcome": outcome, "log": log_text}
