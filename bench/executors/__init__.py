"""Executors decide where each isolated point runs: `local` (the default, one child process after another
on this machine) or `ray` (every point on a node of its target kind, one point per node at a time).

An executor yields one `Finished` per point, whatever happened to it; the suite runner turns each into a
record on the driver's disk as it arrives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator

from ..config import RunPoint
from ..registry import Registry

if TYPE_CHECKING:
    from ..plan import Plan


def this_machine() -> dict:
    """This machine's description with the versions of every library a registered backend declares: what a
    record made here says of its machine (the description sits below the backends, so they are passed in)."""
    from ..backends import declared_libraries
    from ..hardware.machine import describe_machine

    return describe_machine(declared_libraries())


@dataclass
class Finished:
    point: RunPoint
    outcome: dict  # the child's message: status, error, metrics, provenance, phases
    machine: dict  # the description of the machine that ran it
    started: datetime
    wall_s: float
    node: str | None = None
    log_text: str | None = None  # the child's log, when it was written elsewhere (a remote node)
    log_name: str | None = None  # the file a local child wrote its log to, inside the log folder


class Executor:
    install: ClassVar[str | None] = None  # the command that makes a missing executor available

    def __init__(self, **options: Any):
        self.options = options

    @classmethod
    def missing(cls) -> str | None:
        """Why this executor cannot run here (a package not installed), or None."""
        return None

    def check(self, plan: "Plan", suite_file: str) -> None:
        """Refuse, with a one-line ConfigError, a plan this executor cannot run, before anything is written."""

    def destination(self, suite: str, machine_id: str, out: Path | None) -> Path:
        """Where a record made on `machine_id` is appended: `--out`, else results/<machine_id>/<suite>."""
        return out or Path("results") / machine_id / suite

    def resume_dirs(self, suite: str, out: Path | None) -> list[Path]:
        """Where earlier records of this suite may be, for --resume."""
        raise NotImplementedError

    def machines(self, points: list[RunPoint]) -> dict[str | None, dict]:
        """The machine description per target, where known before running (local: this machine)."""
        return {}

    def machine_ids(self, points: list[RunPoint]) -> set[str]:
        """Every machine these points may run on, where known before running."""
        return {m["machine_id"] for m in self.machines(points).values()}

    def run(self, points: list[RunPoint], cache_dir: Path, log_dir: Path,
            announce: Callable[[RunPoint], None]) -> Iterator[Finished]:
        """Yield one Finished per point; call `announce(point)` when a point starts running."""
        raise NotImplementedError


executors: Registry[type[Executor]] = Registry("executor", "bench.executors")
