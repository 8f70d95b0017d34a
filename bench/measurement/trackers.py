"""Trackers: small context managers composed around a scenario (optimum-benchmark's idea), each adding one
typed piece to the record. None of them runs a sampling thread: on a 2-core machine a sampler steals a core.
"""

from __future__ import annotations

from typing import Any

from ..records.schema import Energy, Memory, ScenarioResult
from .memory import PeakRSS
from .size import WEIGHT_BYTES_METHOD, weight_bytes


class MemoryTracker:
    """Peak RSS over the window (kernel high-water mark, reset at entry) and, on CUDA, allocator peaks."""

    def __init__(self, device: str):
        self.device = device
        self._rss = PeakRSS()
        self._cuda: dict[str, int] = {}

    def __enter__(self) -> "MemoryTracker":
        if self.device == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats()
        self._rss.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._rss.__exit__(*exc)
        if self.device == "cuda":
            import torch

            self._cuda = {"cuda_peak_allocated_bytes": torch.cuda.max_memory_allocated(),
                          "cuda_peak_reserved_bytes": torch.cuda.max_memory_reserved()}

    def result(self, model: Any) -> Memory:
        params = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
        return Memory(peak_rss_bytes=self._rss.peak_bytes, peak_rss_method=self._rss.method, parameter_bytes=params,
                      weight_bytes=weight_bytes(model), weight_bytes_method=WEIGHT_BYTES_METHOD, **self._cuda)


class EnergyTracker:
    """Energy over the window from NVML (GPUs) or RAPL (CPUs), or `unavailable` with the reason."""

    def __init__(self, device: str):
        from ..hardware.energy import select_meter

        self.meter = select_meter(device)
        self.joules: float | None = None

    def __enter__(self) -> "EnergyTracker":
        self.meter.start()
        return self

    def __exit__(self, *exc) -> None:
        self.joules = self.meter.stop()

    def result(self, scenario: ScenarioResult, batch_size: int, seq_len: int) -> Energy:
        """Per-inference figures divide by the timed queries; the window includes warm-up, and says so."""
        from ..hardware.energy import derived

        out = self.meter.describe()
        if self.joules is not None and scenario.loop and scenario.loop.queries:
            inferences = scenario.loop.samples or scenario.loop.queries * batch_size
            out.update(derived(self.joules, inferences, inferences * seq_len, scenario.loop.wall_s))
            out["window"] = "whole scenario including warm-up; per-inference figures divide by timed queries"
        return Energy.model_validate(out)
