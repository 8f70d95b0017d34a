"""The `ray` executor, the driver's side: survey the cluster, place every point on a node of its target kind,
one point per node at a time, submit, and bring every record home, whatever happens to the node.

Isolation: every task asks for its node's single `bench_slot` (operators declare `bench_slot: 1` on each
node; the survey refuses any other amount), so Ray never starts a second point on a node that holds one.
Inside, the task runs the point as node.py says.

Targets: a resource name (`h100`) asks for a sliver of that resource, so whatever amount a node declares
matches; `key=value` becomes a Ray label selector. Without targets a point may run on any node with a slot.

Failures: a point Ray loses (its node died, its worker was killed, it was cancelled) and a point whose node
kind has no node left become `failed` records naming the node and the reason, and the suite goes on. A lost
point does not go on running: Ray ends a killed worker's children, and a worker whose raylet dies ends its own.

Ray is imported inside functions only: the registry imports this module where Ray is absent too.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterator

from ...config import ACCESS_CONTEXT, SLOT_RESOURCE, RunPoint
from ...errors import ConfigError
from ...records.build import now
from .. import Executor, Finished, executors
from .node import describe_node, node_name, run_point

INSTALL = 'pip install -e ".[cluster]"'
TARGET_SHARE = 0.001  # of a target resource: a marker that any declared amount satisfies; the slot does the rest
SURVEY_TIMEOUT_S = 300.0  # a node may have to start a worker process first
POLL_S = 2.0  # how often the driver looks for points whose node kind has no node left
SLOT_FIX = (f"start every node with ray start --resources '{{\"{SLOT_RESOURCE}\": 1, ...}}' "
            "(README: Running on a cluster)")


def serves(resources: dict, labels: dict, target: str | None) -> bool:
    """Whether a node with these Ray resources and labels is of kind `target` (None: any node)."""
    if target is None:
        return True
    key, eq, value = target.partition("=")
    return labels.get(key) == value if eq else resources.get(target, 0) > 0


@dataclass
class Node:
    """A cluster node that may run points, as the survey found it."""

    node_id: str
    name: str
    resources: dict
    labels: dict
    machine: dict

    def serves(self, target: str | None) -> bool:
        return serves(self.resources, self.labels, target)


@dataclass
class InFlight:
    """A submitted point; node, machine and start are known once its task reports from a node."""

    point: RunPoint
    submitted: datetime
    node_id: str | None = None
    node: str | None = None
    machine: dict | None = None
    started: datetime | None = None


def placement(target: str | None) -> dict:
    """Ray task options that put a point on a node of `target` and make it hold that node alone."""
    options: dict = {"resources": {SLOT_RESOURCE: 1}}
    if target is not None:
        key, eq, value = target.partition("=")
        if eq:
            options["label_selector"] = {key: value}
        else:
            options["resources"][target] = TARGET_SHARE
    return options


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


@executors.register("ray")
class Ray(Executor):
    install = INSTALL

    def __init__(self, **options):
        super().__init__(**options)
        self._nodes: list[Node] | None = None
        self._connected_here = False

    @classmethod
    def missing(cls) -> str | None:
        return None if importlib.util.find_spec("ray") else "Ray is not installed"

    @property
    def address(self) -> str:
        return self.options.get("address") or "auto"

    def nodes(self) -> list[Node]:
        """The nodes that may run points (those declaring a bench slot), surveyed once per executor."""
        if self._nodes is None:
            self._connect()
            with self._disconnected_on_refusal():
                self._nodes = self._survey()
        return self._nodes

    def check(self, plan, suite_file):
        nodes = self.nodes()
        with self._disconnected_on_refusal():
            for i, target in enumerate(plan.suite.targets or []):
                if not any(n.serves(target) for n in nodes):
                    raise ConfigError(suite_file, f"targets[{i}]",
                                      f"no node of the cluster at {self.address} is of kind {target!r}",
                                      f"start one with ray start --resources '{{\"{SLOT_RESOURCE}\": 1, \"{target}\": 1}}'"
                                      " (or --labels for key=value), or remove the target")

    def resume_dirs(self, suite, out):
        return list(dict.fromkeys(self.destination(suite, n.machine["machine_id"], out) for n in self.nodes()))

    def machines(self, points):
        return {t: self._machine_of(t) for t in {p.target for p in points}}

    def machine_ids(self, points):
        """Not only the first node of each kind: a point without a target may run on any node."""
        targets = {p.target for p in points}
        return {n.machine["machine_id"] for n in self.nodes() if any(n.serves(t) for t in targets)}

    def run(self, points, cache_dir, log_dir, announce):
        import ray

        self.nodes()
        task = ray.remote(num_cpus=0, max_retries=0, num_returns="streaming")(run_point)
        cache_root = str(Path(cache_dir).expanduser().resolve())
        flights = {}
        for point in points:
            ref = task.options(name=f"bench:{point.point_id}", **placement(point.target)).remote(
                point.model_dump(mode="json", context=ACCESS_CONTEXT), cache_root, point.settings.timeout_s)
            flights[ref] = InFlight(point, now())
        last_look = time.monotonic()
        try:
            while flights:
                ready, _ = ray.wait(list(flights), num_returns=1, timeout=POLL_S)
                for ref in ready:
                    flight = flights[ref]
                    try:
                        message = ray.get(next(ref))
                    except ray.exceptions.RayError as exc:
                        del flights[ref]
                        yield self._lost(flight, exc)
                        continue
                    if flight.node is None:
                        flight.node_id, flight.node = message["node_id"], message["node"]
                        flight.machine, flight.started = message["machine"], message["started"]
                        announce(flight.point)
                    else:
                        del flights[ref]
                        yield Finished(point=flight.point, outcome=message["outcome"], machine=flight.machine,
                                       started=flight.started, wall_s=message["outcome"]["child_wall_s"],
                                       node=flight.node, log_text=message["log"])
                if time.monotonic() - last_look >= POLL_S:
                    last_look = time.monotonic()
                    yield from self._stranded(flights)
        finally:
            for ref in flights:  # an interrupted suite leaves no point running on the cluster
                ray.cancel(ref, force=True)
            self._disconnect()

    def _stranded(self, flights: dict) -> Iterator[Finished]:
        """Points still waiting for a node of a kind that has no node left: Ray would hold them forever."""
        import ray

        alive = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get(SLOT_RESOURCE)]
        for ref, flight in list(flights.items()):
            target = flight.point.target
            if flight.node is None and not any(serves(n["Resources"], n.get("Labels") or {}, target) for n in alive):
                ray.cancel(ref, force=True)
                del flights[ref]
                kind = f"of kind {target!r} " if target else ""
                yield self._failed(flight, f"no node {kind}is left in the cluster; the point never started")

    def _lost(self, flight: InFlight, exc: BaseException) -> Finished:
        import ray

        where = f" on node {flight.node}" if flight.node else " before it started"
        alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        died = isinstance(exc, ray.exceptions.NodeDiedError) or (flight.node_id and flight.node_id not in alive)
        reason = "the node died" if died else "Ray lost the task"
        return self._failed(flight, f"{reason}{where}: {type(exc).__name__}: {_first_line(exc)}")

    def _failed(self, flight: InFlight, error: str) -> Finished:
        started = flight.started or flight.submitted
        return Finished(point=flight.point, outcome={"status": "failed", "error": error},
                        machine=flight.machine or self._machine_of(flight.point.target), started=started,
                        wall_s=(now() - started).total_seconds(), node=flight.node)

    def _machine_of(self, target: str | None) -> dict:
        return next(n.machine for n in self.nodes() if n.serves(target))

    def _connect(self) -> None:
        import ray

        if ray.is_initialized():
            return
        try:
            ray.init(address=self.address, logging_level=logging.WARNING, log_to_driver=False)
        except ConnectionError as exc:
            raise ConfigError("--address", self.address, f"no Ray cluster there ({_first_line(exc)})",
                              "start one (README: Running on a cluster) or pass --address HOST:PORT") from None
        self._connected_here = True

    @contextlib.contextmanager
    def _disconnected_on_refusal(self):
        try:
            yield
        except ConfigError:
            self._disconnect()
            raise

    def _disconnect(self) -> None:
        import ray

        if self._connected_here:
            ray.shutdown()
            self._connected_here = False

    def _survey(self) -> list[Node]:
        """Ask every node with a bench slot to describe itself; refuse a cluster where points could share a
        node or where a node runs another bench than this driver."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from ...records.harness import current_harness

        listed = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get(SLOT_RESOURCE)]
        if not listed:
            raise ConfigError("--address", self.address, f"no node of this cluster declares a {SLOT_RESOURCE!r}",
                              SLOT_FIX)
        for n in listed:
            if n["Resources"][SLOT_RESOURCE] != 1:
                raise ConfigError("--address", self.address, f"node {node_name(n['NodeID'], n['NodeManagerHostname'])} "
                                  f"declares {n['Resources'][SLOT_RESOURCE]:g} {SLOT_RESOURCE}s, so points would "
                                  "share it", SLOT_FIX)
        describe = ray.remote(num_cpus=0, max_retries=0)(describe_node)
        refs = [describe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
                for n in listed]
        driver = current_harness()
        nodes = []
        for n, ref in zip(listed, refs):
            name = node_name(n["NodeID"], n["NodeManagerHostname"])
            try:
                answer = ray.get(ref, timeout=SURVEY_TIMEOUT_S)
            except (ray.exceptions.RayError, TimeoutError) as exc:
                raise ConfigError("--address", self.address, f"node {name} did not describe itself: "
                                  f"{type(exc).__name__}: {_first_line(exc)}",
                                  "check it with `ray status`, or stop it") from None
            harness = answer["harness"]
            if harness["source_digest"] != driver.source_digest:
                raise ConfigError("--address", self.address, f"node {name} runs bench {harness['version']} (source "
                                  f"{harness['source_digest']}), this driver {driver.version} (source "
                                  f"{driver.source_digest})", "install the driver's bench commit on every node")
            nodes.append(Node(n["NodeID"], node_name(n["NodeID"], answer["host"]), n["Resources"],
                              n.get("Labels") or {}, answer["machine"]))
        return nodes
