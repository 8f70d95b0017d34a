"""Scenarios: traffic patterns and their metrics. They see a Session and a Workload, never a model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel

from ..measurement.timing import LoopSettings
from ..registry import Registry
from ..variants import NoOptions


@dataclass(frozen=True)
class Workload:
    """The volume of one query, so throughput can be computed without knowing the model."""

    batch_size: int
    seq_len: int

    @property
    def tokens_per_query(self) -> int:
        return self.batch_size * self.seq_len


class Scenario:
    Options: ClassVar[type[BaseModel]] = NoOptions
    tasks: ClassVar[frozenset[str] | None] = None  # None: any task

    def run(self, session: Any, workload: Workload, settings: LoopSettings, options: BaseModel) -> dict:
        raise NotImplementedError


scenarios: Registry[type[Scenario]] = Registry("scenario", "bench.scenarios")
