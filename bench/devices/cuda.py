"""NVIDIA GPUs through torch.cuda: available where torch sees a CUDA device, synchronised before any clock is
read, the caching allocator's peaks for the memory tracker, energy from NVML, bf16 only on GPUs with native bf16
(compute capability 8.0+), and kernels timed with CUDA events."""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator

from ..errors import Unsupported
from . import Device, devices


@devices.register("cuda")
class Cuda(Device):
    energy_meter = "nvml"
    peak_dtypes = ("fp32", "tf32", "bf16", "fp16", "int8")
    gemm_size = 8192
    stream_buffer_mib = 2048

    def unavailable(self) -> str | None:
        import torch

        return None if torch.cuda.is_available() else "CUDA is not available on this machine"

    def synchronize(self) -> None:
        import torch

        torch.cuda.synchronize()

    def reset_memory_peaks(self) -> None:
        import torch

        torch.cuda.reset_peak_memory_stats()

    def memory_peaks(self) -> dict[str, int]:
        import torch

        return {"device_peak_allocated_bytes": torch.cuda.max_memory_allocated(),
                "device_peak_reserved_bytes": torch.cuda.max_memory_reserved()}

    def check_precision(self, dtype: str, cpu_flags: frozenset[str]) -> None:
        import torch

        self.require()
        if dtype == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
            raise Unsupported("bf16 on this GPU: no native bf16 support (needs compute capability 8.0+)")

    def numerics(self) -> dict:
        import torch

        return {"tf32_matmul": torch.backends.cuda.matmul.allow_tf32}

    def time_calls(self, fn: Callable[[], object], seconds: float) -> list[float]:
        """CUDA events around each call, the device synchronised before the loop and before the events are read."""
        import torch

        fn(), fn()
        torch.cuda.synchronize()
        pairs = []
        start = time.perf_counter()
        while len(pairs) < 3 or time.perf_counter() - start < seconds:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            end.synchronize()  # one call in flight at a time keeps the wall-clock budget honest
            pairs.append((begin, end))
        torch.cuda.synchronize()
        return [b.elapsed_time(e) / 1e3 for b, e in pairs]

    @contextlib.contextmanager
    def matmul_mode(self, dtype: str) -> Iterator[str]:
        """fp32 GEMMs with TF32 tensor-core math off, tf32 ones with it on; the previous setting restored."""
        if dtype not in ("fp32", "tf32"):
            yield ""
            return
        import torch

        previous = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
        try:
            yield f" (allow_tf32={dtype == 'tf32'})"
        finally:
            torch.backends.cuda.matmul.allow_tf32 = previous

    def peak_details(self) -> dict:
        import torch

        return {"gpu": torch.cuda.get_device_name()}

    def release_memory(self) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
