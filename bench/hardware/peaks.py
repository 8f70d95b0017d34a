"""This machine's measured ceilings: GEMM FLOP/s per data type and streaming memory bandwidth.

Measured once per machine and cached, so efficiency tables compare runs against what this hardware
actually sustains (not a datasheet number it never reaches).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from ..errors import Unsupported


def _time(fn: Callable[[], object], seconds: float, sync: Callable[[], None]) -> tuple[float, int]:
    """Best per-call time over repeated calls filling `seconds` (after two warm-up calls)."""
    fn(), fn()
    sync()
    best, calls, start = float("inf"), 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
        calls += 1
    return best, calls


def _figure(value: float, unit: str, method: str, **details) -> dict:
    return {"value": value, "unit": unit, "method": method, **details}


def gemm_flops(dtype: str, device: str, n: int, seconds: float) -> dict:
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if dtype == "int8":
        a = torch.randint(-64, 64, (n, n), dtype=torch.int8, device=device)
        b = torch.randint(-64, 64, (n, n), dtype=torch.int8, device=device)
        best, calls = _time(lambda: torch._int_mm(a, b), seconds, sync)
        return _figure(2 * n**3 / best, "op/s", "torch._int_mm int8 x int8 -> int32", size=n, calls=calls)
    t = getattr(torch, {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[dtype])
    a = torch.randn(n, n, device=device).to(t)
    b = torch.randn(n, n, device=device).to(t)
    best, calls = _time(lambda: a @ b, seconds, sync)
    return _figure(2 * n**3 / best, "FLOP/s", f"torch.matmul {dtype}, best of {calls}", size=n, calls=calls)


def int8_linear_ops(n: int, seconds: float) -> dict:
    """The int8 path models actually take on CPU: a dynamically quantized Linear (fbgemm/oneDNN)."""
    import torch

    lin = torch.ao.nn.quantized.dynamic.Linear(n, n, dtype=torch.qint8)
    x = torch.randn(n, n)
    best, calls = _time(lambda: lin(x), seconds, lambda: None)
    return _figure(2 * n**3 / best, "op/s", "dynamic int8 Linear (activation quantization included)", size=n, calls=calls)


def stream_bandwidth(device: str, mib: int, seconds: float) -> dict:
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    src = torch.ones(mib * 2**20 // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    best, calls = _time(lambda: dst.copy_(src), seconds, sync)
    return _figure(2 * src.numel() * 4 / best, "B/s", "tensor copy, bytes read + bytes written", buffer_mib=mib,
                   calls=calls)


def measure_peaks(device: str = "cpu", seconds_per_test: float = 1.0, threads: int | None = None,
                  cpu_flags: frozenset[str] = frozenset(), gemm_size: int | None = None,
                  buffer_mib: int | None = None) -> dict:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise Unsupported("CUDA is not available on this machine")
    if threads:
        torch.set_num_threads(threads)
    n = gemm_size or (8192 if device == "cuda" else 2048)
    mib = buffer_mib or (2048 if device == "cuda" else 512)
    peaks: dict = {"device": device, "threads": torch.get_num_threads(), "gemm": {}, "unavailable": {}}
    dtypes = ["fp32", "bf16", "fp16", "int8"] if device == "cuda" else ["fp32", "bf16", "int8"]
    for dtype in dtypes:
        if device == "cpu" and dtype == "bf16" and not ({"avx512_bf16", "amx_bf16"} & cpu_flags):
            peaks["unavailable"]["bf16"] = "no avx512_bf16/amx_bf16: bf16 GEMMs would be emulated"
            continue
        try:
            peaks["gemm"][dtype] = gemm_flops(dtype, device, n, seconds_per_test)
        except Exception as exc:  # noqa: BLE001 - a missing kernel is a finding, not a crash
            peaks["unavailable"][dtype] = f"{type(exc).__name__}: {exc}"
    if device == "cpu":
        linear = int8_linear_ops(n, seconds_per_test)
        if linear["value"] > peaks["gemm"].get("int8", {}).get("value", 0):
            peaks["gemm"]["int8"] = linear
    peaks["bandwidth"] = stream_bandwidth(device, mib, seconds_per_test)
    return peaks


def load_or_measure_peaks(cache_path: Path, machine_id: str, force: bool = False, **kw) -> dict:
    """Peaks of this machine from the cache, measured (in this process) if absent or forced."""
    cache_path = Path(cache_path)
    if cache_path.exists() and not force:
        cached = json.loads(cache_path.read_text())
        if cached.get("machine_id") == machine_id:
            return cached
    result = {"machine_id": machine_id, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "devices": {}}
    import torch

    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        result["devices"][device] = measure_peaks(device, **kw)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    cache_path.write_text(json.dumps(result, indent=2))
    return result
