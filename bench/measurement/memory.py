"""Peak memory of the measured process during a window, without a sampling thread that would steal a core."""

from __future__ import annotations

import resource
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _vm_hwm_bytes() -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class PeakRSS:
    """Peak resident set size over a `with` block.

    On Linux, writing 5 to /proc/self/clear_refs resets the kernel's high-water mark, so VmHWM after
    the block is the peak inside it. Elsewhere it falls back to the lifetime peak, and says so.
    """

    def __enter__(self) -> "PeakRSS":
        try:
            _CLEAR_REFS.write_text("5")
            self.method = "VmHWM reset at window start (/proc/self/clear_refs)"
        except OSError:
            self.method = "lifetime peak (getrusage): the window could not be isolated"
        self.peak_bytes: int | None = None
        return self

    def __exit__(self, *exc) -> None:
        hwm = _vm_hwm_bytes() if self.method.startswith("VmHWM") else None
        self.peak_bytes = hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
