"""Trackers: small context managers composed around a scenario (optimum-benchmark's idea), each adding one
typed piece to the record. None of them runs a sampling thread: on a 2-core machine a sampler steals a core.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from ..devices import get_device
from ..records.schema import Energy, Loop, Memory
from .memory import PeakRSS
from .size import WEIGHT_BYTES_METHOD, weight_bytes
from .timing import WindowHook


class MemoryTracker:
    """Peak RSS over the window (kernel high-water mark, reset at entry) and the device allocator's peaks where
    the device has an allocator (CUDA's)."""

    def __init__(self, device: str):
        self.device = get_device(device)
        self._rss = PeakRSS()
        self._device_peaks: dict[str, int] = {}

    def __enter__(self) -> "MemoryTracker":
        self.device.reset_memory_peaks()
        self._rss.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._rss.__exit__(*exc)
        self._device_peaks = self.device.memory_peaks()

    def result(self, model: Any) -> Memory:
        params = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
        return Memory(peak_rss_bytes=self._rss.peak_bytes, peak_rss_method=self._rss.method, parameter_bytes=params,
                      weight_bytes=weight_bytes(model), weight_bytes_method=WEIGHT_BYTES_METHOD,
                      **self._device_peaks)


class EnergyTracker(WindowHook):
    """Energy from the meter the device declares (NVML on GPUs, RAPL on CPUs), or `unavailable` with the reason,
    over the timed traffic.

    The tracker is the window hook of the scenario's loop settings: the driver tells it when the timed traffic
    starts and ends, so the meter is read at those edges only (warm-up, LoadGen's sizing runs and peak probes
    outside) and the seconds come from the same two readings. The volume is the one the scenario declares it
    served (`Loop.served`), never guessed from the batch size. Traffic that announced no window is measured over
    the whole scenario, and says so, without a per-inference figure (its volume is unknown)."""

    def __init__(self, device: str, meter: Any = None, clock: Callable[[], float] = time.perf_counter):
        from ..hardware.energy import select_meter

        self.meter = meter if meter is not None else select_meter(device)
        self.clock = clock
        self.joules: float | None = None
        self.window_s: float | None = None
        self.timed = False  # the last reading pair was the announced timed window
        self._started = 0.0

    def _start(self) -> None:
        self.meter.start()
        self._started = self.clock()

    def _stop(self) -> None:
        self.joules = self.meter.stop()
        self.window_s = self.clock() - self._started

    def __enter__(self) -> "EnergyTracker":
        self._start()
        return self

    def opened(self) -> None:
        self.timed = False
        self._start()

    def closed(self) -> None:
        self._stop()
        self.timed = True

    def __exit__(self, *exc) -> None:
        if not self.timed:
            self._stop()

    def result(self, loop: Loop | None) -> Energy:
        from ..hardware.energy import derived

        out = self.meter.describe()
        if self.joules is None:
            return Energy.model_validate(out)
        served = loop.served if self.timed and loop else None
        out.update(derived(self.joules, served and served.samples, served and served.tokens, self.window_s),
                   tokens_counted=served and served.tokens_counted,
                   window="the timed traffic only: warm-up and peak probes excluded" if self.timed else
                   "the whole scenario, warm-up included: its traffic announced no timed window")
        return Energy.model_validate(out)
