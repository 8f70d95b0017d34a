"""Energy meters: NVML's total-energy counter on NVIDIA GPUs, RAPL (powercap) on CPUs.

Where a counter cannot be read the meter says `unavailable` and why. Nothing here estimates: a
TDP-based figure, if wanted, comes from `tdp_estimate` and is labelled as an estimate.
"""

from __future__ import annotations

from pathlib import Path

RAPL_ROOT = Path("/sys/class/powercap")


class EnergyMeter:
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
    def __init__(self, reason: str):
        self.reason = reason


class RaplMeter(EnergyMeter):
    """Sum of the package domains (intel-rapl:N, also used by AMD on recent kernels), wrap-around aware."""

    source = "RAPL powercap energy_uj (CPU packages)"

    def __init__(self, root: Path = RAPL_ROOT):
        self.domains = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
        if not self.domains:
            raise OSError(f"no RAPL package domains under {root}")
        for d in self.domains:
            (d / "energy_uj").read_text()  # raises PermissionError when not readable
        self.status = "measured"

    def _read(self) -> list[tuple[int, int]]:
        out = []
        for d in self.domains:
            max_range = int((d / "max_energy_range_uj").read_text()) if (d / "max_energy_range_uj").exists() else 0
            out.append((int((d / "energy_uj").read_text()), max_range))
        return out

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> float:
        total = 0
        for (begin, max_range), (end, _) in zip(self._start, self._read()):
            total += end - begin if end >= begin else end + max_range - begin
        return total / 1e6


class NvmlMeter(EnergyMeter):
    source = "NVML nvmlDeviceGetTotalEnergyConsumption (mJ)"

    def __init__(self, index: int = 0):
        import pynvml

        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)  # raises NVMLError_NotSupported
        self.status = "measured"

    def start(self) -> None:
        self._start = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)

    def stop(self) -> float:
        return (self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) - self._start) / 1e3


def select_meter(device: str, rapl_root: Path = RAPL_ROOT) -> EnergyMeter:
    try:
        return NvmlMeter() if device == "cuda" else RaplMeter(rapl_root)
    except ImportError:
        return Unavailable("nvidia-ml-py is not installed (pip install nvidia-ml-py)")
    except PermissionError as exc:
        return Unavailable(f"permission denied reading the energy counter ({exc.filename})")
    except Exception as exc:  # noqa: BLE001 - any other failure: say what it was
        return Unavailable(f"{type(exc).__name__}: {exc}")


def derived(joules: float | None, inferences: int, tokens: int, seconds: float) -> dict:
    if joules is None:
        return {}
    watts = joules / seconds if seconds else None
    return {"joules": joules, "avg_watts": watts, "joules_per_inference": joules / inferences,
            "joules_per_token": joules / tokens if tokens else None,
            "samples_per_s_per_watt": (inferences / seconds) / watts if watts else None}


def tdp_estimate(tdp_watts: float, seconds: float, inferences: int) -> dict:
    """An ESTIMATE assuming the device draws its full TDP; never reported as measured."""
    return {"label": "estimate (TDP x time), not measured", "joules_per_inference": tdp_watts * seconds / inferences}
