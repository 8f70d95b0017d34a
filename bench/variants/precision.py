"""The precision stage: every backend's model passes through it between the torch-stage transforms and export.

A precision with no fast path on the device is refused (`Unsupported`) rather than timed as an emulation.
`cast` converts weights and activations; `autocast` keeps fp32 weights and runs eligible ops in the
precision, one fresh context per forward.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable

from ..devices import devices, get_device
from ..errors import Unsupported

_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def resolve_flags(cpu_flags: Iterable[str] | None) -> frozenset[str]:
    if cpu_flags is not None:
        return frozenset(cpu_flags)
    from ..hardware.machine import cpu_flags as read_flags

    return read_flags()


def check_precision(dtype: str, device: str, cpu_flags: Iterable[str] | None = None) -> None:
    """Raise Unsupported where `dtype` has no fast path on `device`, rather than time an emulation."""
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, not {dtype!r}")
    if device not in devices:
        raise Unsupported(f"unknown device {device!r}")
    get_device(device).check_precision(dtype, resolve_flags(cpu_flags))


def cast_precision(model: Any, dtype: str, device: str = "cpu",
                   cpu_flags: Iterable[str] | None = None) -> tuple[Any, dict]:
    """Cast parameters and buffers to `dtype` ("fp32" | "bf16" | "fp16") and move the model to `device`."""
    import torch

    check_precision(dtype, device, cpu_flags)
    model = model.to(device=device, dtype=getattr(torch, _DTYPES[dtype]))
    return model, {"scheme": f"{dtype} weights and activations (cast)", "precision": dtype,
                   "precision_mode": "cast", "api": "nn.Module.to(dtype)", "device": device}


def autocast_context(dtype: str, device: str = "cpu",
                     cpu_flags: Iterable[str] | None = None) -> tuple[Callable[[], Any], dict]:
    """A factory of fresh autocast contexts, one per forward: weights stay fp32, eligible ops run in `dtype`."""
    import torch

    check_precision(dtype, device, cpu_flags)
    info = {"scheme": f"fp32 weights, {dtype} autocast per forward", "precision": dtype,
            "precision_mode": "autocast", "api": f"torch.autocast(device_type={device!r})", "device": device}
    if dtype == "fp32":
        return contextlib.nullcontext, {**info, "scheme": "fp32 (no autocast)", "api": None}
    torch_dtype = getattr(torch, _DTYPES[dtype])
    return (lambda: torch.autocast(device_type=device, dtype=torch_dtype)), info


def apply_precision(model: Any, ctx: Any, engine_api: str | None = None) -> tuple[Any, dict]:
    """The stage itself: check the precision on the run's device, then cast in place of dtype only.

    It never moves the model (the backend places it: ORT exports from the CPU), and fp32 is no cast at
    all, so a transform that chose its own dtype (int4 keeps bf16) keeps it. An engine that runs a precision
    itself (`engine_api`: OpenVINO's inference precision hint) gets the fp32 model, and the record says so.
    """
    check_precision(ctx.precision, ctx.device, ctx.cpu_flags)
    if ctx.precision == "fp32":
        return model, {"scheme": "fp32", "precision": "fp32", "precision_mode": ctx.precision_mode}
    if engine_api:
        return model, {"scheme": f"fp32 weights; the engine runs {ctx.precision}", "precision": ctx.precision,
                       "precision_mode": "engine", "api": engine_api}
    if ctx.precision_mode == "autocast":
        _, info = autocast_context(ctx.precision, ctx.device, ctx.cpu_flags)
        return model, info
    import torch

    model = model.to(dtype=getattr(torch, _DTYPES[ctx.precision]))
    return model, {"scheme": f"{ctx.precision} weights and activations (cast)", "precision": ctx.precision,
                   "precision_mode": "cast", "api": "nn.Module.to(dtype)"}
