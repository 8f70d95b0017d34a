"""Service-level objectives: a bound per latency metric and percentile, as MLPerf's server scenario sets them.

`{ttft_ms: {p99: 2000}, tpot_ms: {p99: 100}}`: the run's p99 TTFT within 2 s and p99 TPOT within 100 ms. Any of
ttft_ms, tpot_ms, itl_ms, e2e_ms; any percentile (p50, p90, p99, p99.9 ...). Or a preset's name.
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Protocol

from pydantic import ValidationError, field_validator, model_validator

from ..errors import ConfigError
from ..records.schema import Frozen

# MLPerf Inference (mlperf.conf in LoadGen 6.0: llama2-70b[-interactive].Server.ttft_latency / tpot_latency, p99).
PRESETS: dict[str, dict[str, dict[str, float]]] = {
    "mlperf-llama2-70b-server": {"ttft_ms": {"p99": 2000}, "tpot_ms": {"p99": 200}},
    "mlperf-llama2-70b-interactive": {"ttft_ms": {"p99": 450}, "tpot_ms": {"p99": 40}},
}
METRICS = ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms")
_PERCENTILE = re.compile(r"p(\d+(?:\.\d+)?)")


def percentile_of(key: str) -> float:
    """'p99' -> 0.99, 'p99.9' -> 0.999."""
    match = _PERCENTILE.fullmatch(key)
    value = float(match.group(1)) / 100 if match else 0.0
    if not 0 < value < 1:
        raise ValueError(f"{key!r} is not a percentile: write p50, p90, p99, p99.9 ...")
    return value


class PerRequest(Protocol):
    """One request's latencies in ms (bench.serving.metrics.RequestLatency); None where a metric does not apply."""

    ttft_ms: float | None
    tpot_ms: float | None
    itl_ms: tuple[float, ...]
    e2e_ms: float | None


class Slo(Frozen):
    """Bounds in ms per metric and percentile; `preset` names the preset it came from."""

    preset: str | None = None
    ttft_ms: dict[str, float] | None = None
    tpot_ms: dict[str, float] | None = None
    itl_ms: dict[str, float] | None = None
    e2e_ms: dict[str, float] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_preset(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value not in PRESETS:
                raise ValueError(f"unknown SLO preset {value!r}: use one of {', '.join(sorted(PRESETS))}, "
                                 "or a mapping such as {ttft_ms: {p99: 2000}}")
            return {"preset": value, **PRESETS[value]}
        return value

    @field_validator(*METRICS)
    @classmethod
    def _bounds(cls, bounds: dict[str, float] | None) -> dict[str, float] | None:
        if bounds is not None:
            if not bounds:
                raise ValueError("give at least one percentile, e.g. {p99: 2000}")
            for key, bound in bounds.items():
                percentile_of(key)
                if bound <= 0:
                    raise ValueError(f"the {key} bound must be positive, not {bound}")
        return bounds

    @model_validator(mode="after")
    def _not_empty(self) -> "Slo":
        if not any(getattr(self, metric) for metric in METRICS):
            raise ValueError(f"an SLO bounds at least one of {', '.join(METRICS)}")
        return self

    def bounds(self) -> Iterator[tuple[str, str, float]]:
        """(metric, percentile key, bound in ms) for every bound."""
        for metric in METRICS:
            for key, bound in (getattr(self, metric) or {}).items():
                yield metric, key, bound

    def highest_percentile(self) -> float:
        return max(percentile_of(key) for _, key, _ in self.bounds())

    def admits(self, request: PerRequest) -> bool:
        """Whether one request is within every bound (goodput, vLLM's per-request rule): each metric against its
        loosest bound, the one every request of a run meeting the SLO could be held to. ITL: the request's longest
        gap. A metric that does not apply to the request (TPOT of a one-token reply) does not count against it."""
        for metric in METRICS:
            bounds = getattr(self, metric)
            if not bounds:
                continue
            value = getattr(request, metric)
            if metric == "itl_ms":
                value = max(value, default=None)
            if value is not None and value > max(bounds.values()):
                return False
        return True


def parse_slo(value: Any, file: str, key: str = "slo") -> Slo:
    """An SLO from a suite value (a preset name or a mapping); bad input is a one-line ConfigError."""
    try:
        return Slo.model_validate(value)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join([key, *map(str, error["loc"])])
        raise ConfigError(file, where, error["msg"], "write e.g. {ttft_ms: {p99: 2000}, tpot_ms: {p99: 100}} or "
                                                     f"one of {', '.join(sorted(PRESETS))}") from None
