"""Energy meters: NVML's total-energy counter on NVIDIA GPUs, RAPL (powercap) on CPUs.

Every meter has the same interface: start(), stop() -> joules or None, `status` ("measured" or
"unavailable"), `reason` (why unavailable) and `source`. Where a counter cannot be read the meter says
`unavailable` and why. Nothing here estimates: a TDP-based figure, if wanted, comes from `tdp_estimate`
and is labelled as an estimate.

RAPL: /sys/class/powercap/intel-rapl:N/energy_uj, one package domain per socket (AMD Zen exposes its
package counter under the same intel-rapl name on recent kernels). Intel documents DRAM as a domain of its
own, outside the package (intel-rapl:N:M named `dram`), so it is added where it exists; the core and uncore
sub-domains are inside the package and are not. A `psys` (platform) domain covers the whole SoC platform,
packages and memory included, so where there is one it is read alone: never psys and package+dram together.
Every meter's `covers` names what its figure includes (["package", "dram"], ["package"], ["psys"], ["gpu"]).
Since Linux 5.10 (CVE-2020-8694) energy_uj is readable by root only, so ordinary users get `unavailable`.
Each counter wraps at its max_energy_range_uj; one wrap per start/stop window is corrected, which holds for
windows shorter than the wrap period (tens of minutes at typical package power).
"""

from __future__ import annotations

from pathlib import Path

from ..devices import get_device

RAPL_ROOT = Path("/sys/class/powercap")


class EnergyMeter:
    """Common interface; this base class is the `unavailable` meter."""

    status = "unavailable"
    reason = ""
    source = ""
    covers: list[str] = []

    def start(self) -> None:
        pass

    def stop(self) -> float | None:
        """Joules since start, or None when unavailable."""
        return None

    def describe(self) -> dict:
        return {"status": self.status, "source": self.source, "reason": self.reason, "covers": self.covers}


def _zone_name(zone: Path) -> str:
    """A powercap zone's `name` (package-0, dram, core, uncore, psys); a top-level zone without one is a package."""
    name_file = zone / "name"
    return name_file.read_text().strip() if name_file.exists() else "package"


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
    """RAPL's powercap counters, wrap-around aware: psys where the machine has it, else every package and its
    DRAM domain."""

    source = "RAPL powercap energy_uj"

    def __init__(self, root: Path = RAPL_ROOT):
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"no powercap directory {root} (RAPL not exposed: container, VM or kernel)")
        names = {d: _zone_name(d) for d in sorted(root.glob("intel-rapl:*"))}
        psys = [d for d, name in names.items() if name == "psys"]
        packages = [d for d, name in names.items() if d.name.count(":") == 1 and name not in ("psys", "dram")]
        dram = [d for d, name in names.items() if name == "dram"]
        if not (psys or packages):
            raise FileNotFoundError(f"no RAPL package domains (intel-rapl:N) under {root}")
        self.domains = psys or packages + dram
        self.covers = ["psys"] if psys else ["package", "dram"] if dram else ["package"]
        self.max_range = []
        for d in self.domains:
            (d / "energy_uj").read_text()  # raises PermissionError when not readable
            mr = d / "max_energy_range_uj"
            self.max_range.append(int(mr.read_text()) if mr.exists() else None)
        self._start: list[int] | None = None
        self.status = "measured"
        self.source = f"{self.source}: {', '.join(f'{d.name} ({names[d]})' for d in self.domains)}"

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
    covers = ["gpu"]

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


METERS = {"rapl": RaplMeter, "nvml": NvmlMeter}


def select_meter(device: str, rapl_root: Path = RAPL_ROOT, gpu_index: int = 0) -> EnergyMeter:
    """The meter `device` declares (the CPU: RAPL; NVIDIA GPUs: NVML), or an Unavailable one with the reason."""
    kind = get_device(device).energy_meter
    if kind not in METERS:
        return Unavailable(f"no energy meter reads the {device} device")
    source = METERS[kind].source
    try:
        return NvmlMeter(gpu_index) if kind == "nvml" else RaplMeter(rapl_root)
    except ImportError:
        return Unavailable("nvidia-ml-py is not installed (pip install nvidia-ml-py)", source)
    except PermissionError as exc:
        return Unavailable(f"permission denied reading the energy counter ({exc.filename}); RAPL energy_uj "
                           "is root-only since Linux 5.10", source)
    except FileNotFoundError as exc:
        return Unavailable(f"{exc}", source)
    except Exception as exc:  # noqa: BLE001 - any other failure (NVML not supported, no driver): say what
        return Unavailable(f"{type(exc).__name__}: {exc}", source)


def derived(joules: float | None, inferences: int | None, tokens: int | None, seconds: float) -> dict:
    """Per-inference and per-token energy, average power and samples/s per W from the energy of one window,
    its seconds and what it served (None: not known); the volume is stated beside the figures."""
    if joules is None:
        return {}
    return {"joules": joules, "window_s": seconds, "inferences": inferences, "tokens": tokens,
            "avg_watts": joules / seconds if seconds else None,
            "joules_per_inference": joules / inferences if inferences else None,
            "joules_per_token": joules / tokens if tokens else None,
            "samples_per_s_per_watt": inferences / joules if inferences and joules else None}


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
