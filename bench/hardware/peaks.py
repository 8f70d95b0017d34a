"""This machine's measured ceilings: GEMM FLOP/s per data type and streaming memory bandwidth.

Measured once per machine and cached, so efficiency tables compare runs against what this hardware
actually sustains (not a datasheet number it never reaches).

Conventions (also written into every figure):
  * GEMM: square n x n x n matmul, 2 n^3 FLOPs (int8: op/s, a multiply-add counted as 2 ops); the figure
    is the best per-call rate over the repeats after two warm-up calls (a ceiling, not a typical rate);
    the median is recorded beside it.
  * bandwidth: a large tensor copy dst.copy_(src), counting bytes read + bytes written (2 x buffer), the
    STREAM "copy" convention. Write-allocate traffic (a CPU reading dst's lines before overwriting them)
    is not counted, so the DRAM traffic can be up to 1.5x the figure. Each buffer is far larger than the
    last-level cache.
  * timing is the device's (bench/devices/): on the CPU time.perf_counter around each call; on CUDA, CUDA
    events around each call, with the device synchronized before the loop and before reading the events.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Callable, Iterable

from ..devices import devices as registered
from ..devices import get_device
from ..errors import Unsupported

GEMM_METHOD = "square n x n @ n x n, 2 n^3 {unit_word} per call, best call after 2 warm-ups"
BW_METHOD = "tensor copy dst.copy_(src): bytes read + bytes written (2 x buffer), STREAM copy convention"


def _timed(fn: Callable[[], object], device: str, seconds: float) -> tuple[float, float, int]:
    times = get_device(device).time_calls(fn, seconds)
    return min(times), statistics.median(times), len(times)


def _figure(work: float, times: tuple[float, float, int], unit: str, method: str, **details) -> dict:
    best, median, calls = times
    return {"value": work / best, "unit": unit, "method": method, "median_value": work / median,
            "repeats": calls, "best_call_s": best, **details}


TORCH_DTYPES = {"fp32": "float32", "tf32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def gemm_flops(dtype: str, device: str, n: int, seconds: float) -> dict:
    """One GEMM ceiling: fp32, tf32 (CUDA), bf16, fp16 via torch.matmul; int8 via torch._int_mm."""
    import torch

    work = 2 * n**3
    if dtype == "int8":
        if not hasattr(torch, "_int_mm"):
            raise Unsupported(f"torch {torch.__version__} has no torch._int_mm")
        a = torch.randint(-64, 64, (n, n), dtype=torch.int8, device=device)
        b = torch.randint(-64, 64, (n, n), dtype=torch.int8, device=device)
        times = _timed(lambda: torch._int_mm(a, b), device, seconds)
        return _figure(work, times, "op/s", "torch._int_mm int8 x int8 -> int32; "
                       + GEMM_METHOD.format(unit_word="ops"), size=n, kernel="torch._int_mm")
    t = getattr(torch, TORCH_DTYPES[dtype])
    a = torch.randn(n, n, device=device).to(t)
    b = torch.randn(n, n, device=device).to(t)
    method = f"torch.matmul {dtype}; " + GEMM_METHOD.format(unit_word="FLOPs")
    with get_device(device).matmul_mode(dtype) as mode:
        times = _timed(lambda: a @ b, device, seconds)
    return _figure(work, times, "FLOP/s", method + mode, size=n, kernel="torch.matmul")


def int8_linear_ops(n: int, seconds: float) -> dict:
    """The int8 path quantized models take on CPU: a dynamically quantized Linear (fbgemm/oneDNN),
    activation quantization included."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lin = torch.ao.nn.quantized.dynamic.Linear(n, n, dtype=torch.qint8)
    x = torch.randn(n, n)
    times = _timed(lambda: lin(x), "cpu", seconds)
    return _figure(2 * n**3, times, "op/s", "dynamic int8 Linear (activation quantization included); "
                   + GEMM_METHOD.format(unit_word="ops"), size=n, kernel="torch.ao dynamic quantized Linear")


def stream_bandwidth(device: str, mib: int, seconds: float, llc_bytes: int | None = None) -> dict:
    """Streaming copy bandwidth with two `mib` MiB float32 buffers."""
    import torch

    src = torch.ones(mib * 2**20 // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    times = _timed(lambda: dst.copy_(src), device, seconds)
    nbytes = 2 * src.numel() * 4
    out = _figure(nbytes, times, "B/s", BW_METHOD, buffer_mib=mib, bytes_per_call=nbytes,
                  counts="read + write")
    if llc_bytes:
        out["last_level_cache_bytes"] = llc_bytes
    return out


def cpu_llc_bytes() -> int | None:
    """Size of the largest CPU cache level from sysfs (L3 on x86), or None."""
    best = None
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip()
            level = int((index / "level").read_text())
        except (OSError, ValueError):
            continue
        mult = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:].upper(), 1)
        size = int(text.rstrip("KMGkmg")) * mult
        if best is None or level > best[0]:
            best = (level, size)
    return best[1] if best else None


def _default_buffer_mib(llc: int | None) -> int:
    """Host memory: each buffer at least 512 MiB and 2x the last-level cache, within 1/8 of free memory."""
    want = max(512, 2 * (llc or 0) // 2**20)
    try:
        import psutil

        want = min(want, psutil.virtual_memory().available // 8 // 2**20)
    except Exception:  # noqa: BLE001 - psutil missing: keep the wish
        pass
    return max(64, int(want))


def measure_peaks(device: str = "cpu", seconds_per_test: float = 1.0, threads: int | None = None,
                  cpu_flags: Iterable[str] | None = None, gemm_size: int | None = None,
                  buffer_mib: int | None = None) -> dict:
    """GEMM ceilings per dtype and streaming bandwidth of `device` (a registered device: what it measures is
    its declaration).

    Returns {"device", "threads", "gemm": {dtype: figure}, "bandwidth": figure, "unavailable":
    {dtype: reason}, ...}; each figure has value, unit, method, size (or buffer_mib), repeats.
    Raises Unsupported for a device this machine cannot run.
    """
    import torch

    if device not in registered:
        raise ValueError(f"device must be one of {', '.join(registered.names())}, not {device!r}")
    dev = get_device(device)
    dev.require()
    if cpu_flags is None:
        from .machine import cpu_flags as read_flags

        cpu_flags = read_flags()
    flags = frozenset(cpu_flags)
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        n = gemm_size or dev.gemm_size
        llc = cpu_llc_bytes() if dev.stream_buffer_mib is None else None
        mib = buffer_mib or dev.stream_buffer_mib or _default_buffer_mib(llc)
        peaks: dict = {"device": device, "threads": torch.get_num_threads(), "seconds_per_test": seconds_per_test,
                       "torch": torch.__version__, "gemm": {}, "unavailable": {},
                       "conventions": {"gemm": GEMM_METHOD.format(unit_word="FLOPs (int8: ops)"),
                                       "bandwidth": BW_METHOD + "; write-allocate traffic not counted"}}
        peaks.update(dev.peak_details())
        for dtype in dev.peak_dtypes:
            reason = dev.peak_unavailable(dtype, flags)
            if reason:
                peaks["unavailable"][dtype] = reason
                continue
            try:
                peaks["gemm"][dtype] = gemm_flops(dtype, device, n, seconds_per_test)
            except Exception as exc:  # noqa: BLE001 - a missing kernel is a finding, not a crash
                peaks["unavailable"][dtype] = f"{type(exc).__name__}: {exc}"
        if dev.dynamic_int8_linear:
            _cpu_int8(peaks, n, seconds_per_test)
        peaks["bandwidth"] = stream_bandwidth(device, mib, seconds_per_test, llc)
        return peaks
    finally:
        torch.set_num_threads(previous_threads)


def _cpu_int8(peaks: dict, n: int, seconds: float) -> None:
    """Keep the faster int8 path as the int8 ceiling, the other as an alternative; an int8 GEMM slower
    than fp32 is a reference loop, not a hardware int8 path, and is recorded as unavailable."""
    candidates = []
    if "int8" in peaks["gemm"]:
        candidates.append(peaks["gemm"].pop("int8"))
    try:
        candidates.append(int8_linear_ops(n, seconds))
    except Exception as exc:  # noqa: BLE001
        peaks["unavailable"].setdefault("int8_dynamic_linear", f"{type(exc).__name__}: {exc}")
    if not candidates:
        return
    candidates.sort(key=lambda f: f["value"], reverse=True)
    best, others = candidates[0], candidates[1:]
    fp32 = peaks["gemm"].get("fp32", {}).get("value", 0)
    if best["value"] <= fp32:
        peaks["unavailable"]["int8"] = (f"no fast int8 GEMM kernel: best int8 path ({best['kernel']}) reached "
                                        f"{best['value'] / 1e9:.0f} Gop/s, not above fp32's {fp32 / 1e9:.0f} GFLOP/s")
        peaks["int8_measured"] = candidates
        return
    peaks["unavailable"].pop("int8", None)
    best["alternatives"] = others
    peaks["gemm"]["int8"] = best


def load_or_measure_peaks(cache_path: Path, machine_id: str, force: bool = False,
                          devices: Iterable[str] | None = None, **kw) -> dict:
    """Peaks of this machine from the JSON cache, measured (in this process) when absent, stale (another
    machine_id) or forced, on `devices` (default: every registered device). `kw` goes to `measure_peaks`.
    Format: {"machine_id", "measured_at", "devices": {device: measure_peaks(...)}, "unavailable": {device: reason}}."""
    cache_path = Path(cache_path)
    if cache_path.exists() and not force:
        try:
            cached = json.loads(cache_path.read_text())
        except (OSError, ValueError):
            cached = {}
        if cached.get("machine_id") == machine_id:
            return cached
    result = {"machine_id": machine_id, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "devices": {}, "unavailable": {}}
    for device in devices or registered.names():
        try:
            result["devices"][device] = measure_peaks(device, **kw)
        except Unsupported as exc:
            result["unavailable"][device] = str(exc)
        get_device(device).release_memory()
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    cache_path.write_text(json.dumps(result, indent=2))
    return result
