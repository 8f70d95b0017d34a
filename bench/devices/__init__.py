"""The devices a point runs on, one module each, so a new accelerator (`xpu`, `npu`, `mlu`) is one module here.

A `Device` says whether it is available on this machine (and why not), how to wait for the work queued on it,
its allocator's memory peaks for the memory tracker, which energy meter reads it, which precisions it runs
natively (the precision stage's checks), and how the peak measurements time a kernel on it. Nothing else in
the harness switches on a device's name: callers ask the point's device object. A device's name is also its
torch device type.

Device modules import no numerical library at import time: the fork server loads this registry.
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, ClassVar, Iterator

from ..errors import Unsupported
from ..registry import Registry


class Device:
    """Base for registered devices; its defaults are a host device's (nothing to wait for, no allocator).

    Declarations: `energy_meter`, the meter that reads its energy (a name in hardware/energy.py's METERS, None
    where none can); for `bench peak`, the GEMM data types it measures (`peak_dtypes`), the default GEMM size,
    the bandwidth buffer (`stream_buffer_mib`; None sizes it past the host's last-level cache, within free
    memory) and whether torch.ao's dynamically quantized Linear runs here (`dynamic_int8_linear`: it then
    competes for the int8 ceiling).
    """

    energy_meter: ClassVar[str | None] = None
    peak_dtypes: ClassVar[tuple[str, ...]] = ("fp32", "bf16", "fp16", "int8")
    gemm_size: ClassVar[int] = 2048
    stream_buffer_mib: ClassVar[int | None] = None
    dynamic_int8_linear: ClassVar[bool] = False

    def unavailable(self) -> str | None:
        """Why this machine cannot run on the device, or None where it can."""
        return None

    def require(self) -> None:
        reason = self.unavailable()
        if reason:
            raise Unsupported(reason)

    def synchronize(self) -> None:
        """Return when the work queued on the device is done (a clock read after it is honest)."""

    def reset_memory_peaks(self) -> None:
        """Start the allocator's high-water marks afresh (the memory tracker, at the scenario's start)."""

    def memory_peaks(self) -> dict[str, int]:
        """The allocator's high-water marks since the reset, as `Memory` fields ({} where the device has none)."""
        return {}

    def check_precision(self, dtype: str, cpu_flags: frozenset[str]) -> None:
        """Raise Unsupported where `dtype` (fp32, bf16, fp16; tf32 for matmuls) has no fast path here."""
        raise NotImplementedError

    def numerics(self) -> dict:
        """Settings of the device that change a model's numerics, recorded with the session."""
        return {}

    def time_calls(self, fn: Callable[[], object], seconds: float) -> list[float]:
        """Seconds of each call of `fn` (after two warm-up calls), at least three calls and `seconds` in all."""
        fn(), fn()
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < 3 or time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return times

    @contextlib.contextmanager
    def matmul_mode(self, dtype: str) -> Iterator[str]:
        """The device's matmul settings for timing a `dtype` GEMM; yields what the figure's method should add."""
        yield ""

    def peak_unavailable(self, dtype: str, cpu_flags: frozenset[str]) -> str | None:
        """Why `bench peak` measures no `dtype` GEMM ceiling here, or None to measure it."""
        return None

    def peak_details(self) -> dict:
        """What `bench peak` records about the device beside its figures."""
        return {}

    def release_memory(self) -> None:
        """Hand cached memory back after `bench peak` measured the device."""


devices: Registry[type[Device]] = Registry("device", "bench.devices")


def get_device(name: str) -> Device:
    """The registered device called `name` (KeyError naming the known ones otherwise)."""
    return devices.get(name)()
