"""Scenarios: traffic patterns and their metrics. They see a Session and a Workload, never a model, and
leave the clock to a driver (`bench/drivers`), as MLPerf LoadGen does.

A scenario returns a `ScenarioResult` (records/schema.py): timing only. Memory, energy, work and quality
are added around it by the runner. A scenario declares what one of its queries consists of (`work_phases`:
a plain forward, or a generation's prefill and decode steps) and measures the seconds of each
(`ScenarioResult.phase_seconds`), so the efficiency tables judge every scenario without knowing its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, Field, field_validator

from ..config import NoOptions
from ..hardware.work import WorkPhase
from ..measurement.timing import LoopSettings
from ..records.schema import ScenarioResult, Served
from ..registry import Registry

# names earlier versions used: kept working, or refused with the one-line fix
ALIASES = {"latency": "single-stream"}
RETIRED = {"throughput": "use `offline` (every sample issued at once, the system batches them) or `single-stream` "
                         "(one query at a time; it reports samples/s too)"}


@dataclass(frozen=True)
class Workload:
    """The volume of one query, so throughput can be computed without knowing the model; and, for scenarios that
    build their own requests (serving), the model's tokenizer and task."""

    batch_size: int
    seq_len: int
    tokenizer: Any = None
    task: str | None = None

    @property
    def tokens_per_query(self) -> int:
        return self.batch_size * self.seq_len

    def served(self, samples: int, new_tokens: int = 0) -> Served:
        """What `samples` samples are in volume: the tokens they generated, or else the prompt tokens they
        processed."""
        if new_tokens:
            return Served(samples=samples, tokens=samples * new_tokens, tokens_counted="output tokens generated")
        return Served(samples=samples, tokens=samples * self.seq_len, tokens_counted="input tokens processed")


class DriverOptions(NoOptions):
    driver: str = Field("bench", description="traffic generator: `bench` (ours) or `loadgen` (MLPerf LoadGen)")

    @field_validator("driver")
    @classmethod
    def _known(cls, name: str) -> str:
        from ..drivers import drivers

        if name not in drivers:
            raise ValueError(f"unknown driver {name!r}; known: {', '.join(drivers.names())}")
        return name


class Scenario:
    """`serving`: the scenario sends requests to an engine and its result is a serving result (its answer is a
    capacity at an SLO, never a latency ratio): the plan, the record and the report read this declaration."""

    Options: ClassVar[type[BaseModel]] = NoOptions
    tasks: ClassVar[frozenset[str] | None] = None  # None: any task
    serving: ClassVar[bool] = False

    @classmethod
    def retired(cls, options: dict) -> dict[str, str]:
        """Options earlier versions took that this one refuses: {option: the fix, in one line}."""
        return {}

    @classmethod
    def points(cls, options: dict) -> list[dict]:
        """The options of each point one suite entry expands to (a list of values: one point per value)."""
        return [options]

    @classmethod
    def unsupported(cls, options: BaseModel, task: str | None) -> str | None:
        """Why these options cannot run on a model of `task`, judged at plan time (the point is skipped), or None."""
        return None

    def run(self, session: Any, workload: Workload, settings: LoopSettings, options: BaseModel) -> ScenarioResult:
        raise NotImplementedError

    def work_phases(self, workload: Workload, options: BaseModel) -> list[WorkPhase]:
        """The timed phases of one query whose work the efficiency tables judge (default: one plain forward);
        `run` puts the seconds of each in `phase_seconds`. None: nothing this scenario times is a phase's steady
        cost."""
        return [WorkPhase("forward")]


def driver_for(options: BaseModel):
    from ..drivers import drivers

    return drivers.get(getattr(options, "driver", "bench"))()


scenarios: Registry[type[Scenario]] = Registry("scenario", "bench.scenarios")
