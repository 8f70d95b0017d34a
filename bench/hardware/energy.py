"""Energy meters: NVML's total-energy counter on NVIDIA GPUs, RAPL (powercap) on CPUs.

Every meter has the same interface: start(), stop() -> joules or None, `status` ("measured" or
"unavailable"), `reason` (why unavailable) and `source`. Where a counter cannot be read the meter says
`unavailable` and why. Nothing here estimates: a TDP-based figure, if wanted, comes from `tdp_estimate`
and is labelled as an estimate.

RAPL: /sys/class/powercap/intel-rapl:N/energy_uj, one package domain per socket (AMD Zen exposes its
package counter under the same intel-rapl name on recent kernels). Sub-domains (intel-rapl:N:M: core,
uncore, dram) are inside the package figure and not added; a `psys` (platform) domain is skipped. Since
Linux 5.10 (CVE-2020-8694) energy_uj is readable by root only, so ordinary users get `unavailable`.
The counter wraps at max_energy_range_uj; one wrap per start/stop window is corrected, which holds for
windows shorter than the wrap period (tens of minutes at typical package power).
"""

from __future__ import annotations

from pathlib import Path

RAPL_ROOT = Path("/sys/class/powercap")


class EnergyMeter:
    """Common interface; this base class is the `unavailable` meter."""

    status = "unavailable"
    reason = ""
    source = ""

    def start(self) -> None:
        pass

    def stop(self) -> float | None:
        """Joules since start, or None when unavailable."""
        return None

    def describe(self) -> dict:
        return {"status": self.status, "source": self.source, "reason": self.reason}


class Unavailable(EnergyMeter):
    def __init__(self, reason: str, source: str = ""):
        self.reason = reason
        self.source = source


def rapl_delta_uj(begin: int, end: int, max_range_uj: int | None) -> int | None:
    """Energy between two readings of a wrapping RAPL counter; None when it wrapped and the range is unknown."""
    if end >= begin:
        return end - begin
    if not max_range_uj:
        return None
    return max_range_uj - begin + end


class RaplMeter(EnergyMeter):
    """Sum of the package domains (intel-rapl:N), wrap-around aware."""

    source = "RAPL powercap energy_uj (CPU package domains)"

    def __init__(self, root: Path = RAPL_ROOT):
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"no powercap directory {root} (RAPL not exposed: container, VM or kernel)")
        domains = []
        for d in sorted(root.glob("intel-rapl:*")):
            if d.name.count(":") != 1:
                continue
            name_file = d / "name"
            if name_file.exists() and name_file.read_text().strip() == "psys":
                continue
            domains.append(d)
        if not domains:
            raise FileNotFoundError(f"no RAPL package domains (intel-rapl:N) under {root}")
        self.domains = domains
        self.max_range = []
        for d in domains:
            (d / "energy_uj").read_text()  # raises PermissionError when not readable
            mr = d / "max_energy_range_uj"
            self.max_range.append(int(mr.read_text()) if mr.exists() else None)
        self._start: list[int] | None = None
        self.status = "measured"
        self.source = f"{self.source}: {', '.join(d.name for d in domains)}"

    def _read(self) -> list[int]:
        return [int((d / "energy_uj").read_text()) for d in self.domains]

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> float | None:
        if self._start is None:
            raise RuntimeError("RaplMeter.stop() called before start()")
        end = self._read()
        total = 0
        for begin, finish, max_range in zip(self._start, end, self.max_range):
            delta = rapl_delta_uj(begin, finish, max_range)
            if delta is None:
                self.reason = "counter wrapped and max_energy_range_uj is unknown"
                return None
            total += delta
        return total / 1e6


class NvmlMeter(EnergyMeter):
    """NVML total energy since driver load, in mJ (Volta and later)."""

    source = "NVML nvmlDeviceGetTotalEnergyConsumption (mJ)"

    def __init__(self, index: int = 0):
        import pynvml

        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)  # raises NVMLError_NotSupported
        self._start: int | None = None
        self.status = "measured"
        self.source = f"{self.source}, GPU {index}"

    def start(self) -> None:
        self._start = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)

    def stop(self) -> float:
        if self._start is None:
            raise RuntimeError("NvmlMeter.stop() called before start()")
        return (self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) - self._start) / 1e3


def select_meter(device: str, rapl_root: Path = RAPL_ROOT, gpu_index: int = 0) -> EnergyMeter:
    """The meter for `device` ("cuda": NVML; anything else: RAPL), or an Unavailable one with the reason."""
    source = NvmlMeter.source if device == "cuda" else RaplMeter.source
    try:
        return NvmlMeter(gpu_index) if device == "cuda" else RaplMeter(rapl_root)
    except ImportError:
        return Unavailable("nvidia-ml-py is not installed (pip install nvidia-ml-py)", source)
    except PermissionError as exc:
        return Unavailable(f"permission denied reading the energy counter ({exc.filename}); RAPL energy_uj "
                           "is root-only since Linux 5.10", source)
    except FileNotFoundError as exc:
        return Unavailable(f"{exc}", source)
    except Exception as exc:  # noqa: BLE001 - any other failure (NVML not supported, no driver): say what
        return Unavailable(f"{type(exc).__name__}: {exc}", source)


def derived(joules: float | None, inferences: int, tokens: int, seconds: float) -> dict:
    """Per-inference and per-token energy, average power and samples/s per W from a measured energy."""
    if joules is None:
        return {}
    watts = joules / seconds if seconds else None
    return {"joules": joules, "avg_watts": watts,
            "joules_per_inference": joules / inferences if inferences else None,
            "joules_per_token": joules / tokens if tokens else None,
            "samples_per_s_per_watt": (inferences / seconds) / watts if watts and seconds else None}


def joules_per_inference(joules: float | None, inferences: int) -> float | None:
    return joules / inferences if joules is not None and inferences else None


def joules_per_token(joules: float | None, tokens: int) -> float | None:
    return joules / tokens if joules is not None and tokens else None


def samples_per_s_per_watt(samples: int, joules: float | None) -> float | None:
    """(samples / s) / (J / s) = samples per joule."""
    return samples / joules if joules else None


def tdp_estimate(tdp_watts: float, seconds: float, inferences: int, tokens: int | None = None,
                 utilization: float = 1.0) -> dict:
    """An ESTIMATE assuming the device draws `utilization` x its TDP for `seconds`; never reported as measured."""
    joules = tdp_watts * utilization * seconds
    return {"label": "estimate (TDP x utilization x time), not measured", "status": "estimate",
            "tdp_watts": tdp_watts, "utilization": utilization, "joules": joules,
            "joules_per_inference": joules / inferences if inferences else None,
            "joules_per_token": joules / tokens if tokens else None}
