"""The host CPU: always there, nothing to wait for, no allocator peaks (the tracker reads the process's RSS),
energy from RAPL, and bf16 or fp16 only where the CPU has native instructions for them."""

from __future__ import annotations

from ..errors import Unsupported
from . import Device, devices

BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@devices.register("cpu")
class Cpu(Device):
    energy_meter = "rapl"
    dynamic_int8_linear = True

    def check_precision(self, dtype: str, cpu_flags: frozenset[str]) -> None:
        """Refuse a precision the CPU would emulate rather than time an emulation."""
        if dtype == "tf32":
            raise Unsupported("TF32 is a CUDA matmul mode; it has no meaning on CPU")
        if dtype == "bf16" and not (BF16_FLAGS & cpu_flags):
            raise Unsupported("bf16 on this CPU: no avx512_bf16 or amx_bf16 flag, so bf16 matmuls would be emulated")
        if dtype == "fp16" and "amx_fp16" not in cpu_flags:
            raise Unsupported("fp16 on CPU: no amx_fp16 flag; oneDNN converts fp16 GEMMs, which then run no faster "
                              "than fp32 (measured here with avx512_fp16: 1.1x slower) while losing precision")

    def peak_unavailable(self, dtype: str, cpu_flags: frozenset[str]) -> str | None:
        if dtype == "bf16" and not (BF16_FLAGS & cpu_flags):
            return "no avx512_bf16/amx_bf16 in the CPU flags: bf16 GEMMs would be converted/emulated, no native peak"
        if dtype == "fp16" and not ({"avx512_fp16", "amx_fp16"} & cpu_flags):
            return "no avx512_fp16/amx_fp16 in the CPU flags: fp16 GEMMs would be converted/emulated, no native peak"
        return None

    def peak_details(self) -> dict:
        import torch

        return {"cpu_capability": torch.backends.cpu.get_cpu_capability()}
