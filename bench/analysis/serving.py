"""Serving points as figures to reason over: a serving point's answer is its capacity at the SLO (never a latency
ratio from a run that may be overloaded), with its interval across the point's processes (`bench run --repeat`).

A point's capacity comes from, in order: its capacity search (`metrics.capacity`, a bisection), its sweep's levels
(the highest valid rate), or its own load where its run was valid (a lower bound: "at least"). Across processes the
interval is Student's t over the processes' capacities (n >= 2 exact ones); one process says `n=1`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from ..records.schema import Record
from ..records.serving import ServingMetrics
from ..scenarios import scenarios
from ..serving.slo import Slo

CONFIDENCE = 0.95
UNITS = {"rate_per_s": "requests/s", "users": "users"}


def is_serving(rec: Record) -> bool:
    """A serving point, as its result says (a serving result), or, where it has none (failed), as its scenario
    declares."""
    if rec.metrics.serving is not None:
        return True
    name = rec.config.scenario.name
    return name in scenarios and scenarios.get(name).serving


@dataclass(frozen=True)
class PointCapacity:
    """One process's capacity: `value` None when even the lowest load tried was not valid; `exact` False where the
    value is only a lower bound (the highest load tried was valid, or the point ran one load)."""

    parameter: str
    value: float | None
    exact: bool
    source: str  # "search", "sweep levels" or "the point's load"
    metrics: ServingMetrics | None  # the run at that capacity, where one was made


def point_capacity(rec: Record) -> PointCapacity | None:
    m = rec.metrics
    if m.serving is None:
        return None
    if m.capacity is not None:
        c = m.capacity
        at = next((p.metrics for p in c.probes if p.load == c.capacity and p.valid), None)
        return PointCapacity(c.parameter, c.capacity, c.lowest_invalid is not None or c.capacity is None,
                             "search" if c.method == "bisection" else c.method, at)
    load = m.serving.load
    parameter, value = ("users", load.users) if load.pattern == "closed-loop" else ("rate_per_s", load.rate_per_s)
    if load.pattern == "burst" or value is None:
        return None
    valid = m.verdict is not None and m.verdict.valid
    return PointCapacity(parameter, value if valid else None, False, "the point's load", m.serving if valid else None)


@dataclass(frozen=True)
class CapacityEstimate:
    parameter: str
    value: float | None  # the mean over processes (the one process's value where n = 1)
    low: float | None
    high: float | None
    processes: int
    note: str  # "n=1", "at least", "below the lowest load tried" ...
    metrics: ServingMetrics | None  # the newest process's run at its capacity


def capacity_estimate(records: list[Record]) -> CapacityEstimate | None:
    """The capacity of one point over its processes (oldest first): the mean and its 95% t-interval where every
    process found an exact one, else what can be said."""
    found = [c for c in map(point_capacity, records) if c is not None]
    if not found:
        return None
    newest, n = found[-1], len(found)
    values = [c.value for c in found]
    if any(v is None for v in values):
        below = sum(v is None for v in values)
        return CapacityEstimate(newest.parameter, newest.value, None, None, n,
                                f"not met at the lowest load tried in {below} of {n} processes", newest.metrics)
    mean = float(np.mean(values))
    if not all(c.exact for c in found):
        note = "at least: the highest load tried was valid" if newest.source != "the point's load" else \
            "at least: valid at the point's load (no capacity search)"
        return CapacityEstimate(newest.parameter, min(values), None, None, n, note, newest.metrics)
    if n == 1:
        return CapacityEstimate(newest.parameter, mean, None, None, 1, "n=1", newest.metrics)
    half = float(sps.t.ppf((1 + CONFIDENCE) / 2, n - 1) * np.std(values, ddof=1) / math.sqrt(n))
    return CapacityEstimate(newest.parameter, mean, mean - half, mean + half, n, f"n={n}", newest.metrics)


def slo_text(rec: Record) -> str:
    """`ttft p99 <= 2000 ms, tpot p99 <= 200 ms`, or `no SLO`: the point's SLO as its options give it (a run judged
    without it, a sweep's throughput level, still has one), else as its verdict checked it (a migrated record)."""
    given = rec.config.scenario.options.get("slo")
    try:
        bounds = list(Slo.model_validate(given).bounds()) if given is not None else []
    except ValueError:  # options of another version: the verdict says what was checked
        bounds = []
    if not bounds and rec.metrics.verdict:
        bounds = [(c.metric, c.percentile, c.bound_ms) for c in rec.metrics.verdict.slo]
    if not bounds:
        return "no SLO"
    return ", ".join(f"{metric.removesuffix('_ms')} {key} <= {bound:g} ms" for metric, key, bound in bounds)


def load_text(metrics: ServingMetrics) -> str:
    """`open loop 12 req/s`, `4 users`, `burst`."""
    load = metrics.load
    if load.pattern == "open-loop":
        shape = "" if load.distribution in (None, "poisson") else f" gamma {load.burstiness:g}"
        return f"{load.rate_per_s:.3g} req/s{shape}"
    if load.pattern == "closed-loop":
        return f"{load.users} user{'s' if load.users != 1 else ''}"
    return f"burst of {load.users}"


def capacity_text(estimate: CapacityEstimate | None) -> str:
    """`3.1 req/s [2.9, 3.3] n=3`, `>= 8 users`, `none (...)`: the capacity as a cell."""
    if estimate is None:
        return ""
    unit = "req/s" if estimate.parameter == "rate_per_s" else "user" if estimate.value == 1 else "users"
    if estimate.value is None:
        return "none within the SLO"
    value = f"{estimate.value:.3g} {unit}"
    if estimate.note.startswith("at least"):
        return f">= {value}"
    if estimate.low is not None:
        return f"{value} [{estimate.low:.3g}, {estimate.high:.3g}] {estimate.note}"
    return f"{value} {estimate.note}"


def failed_checks(rec: Record) -> str:
    verdict = rec.metrics.verdict
    return ", ".join(k for k, ok in verdict.checks.items() if not ok) if verdict else ""
