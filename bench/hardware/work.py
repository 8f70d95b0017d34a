"""FLOPs and bytes of one query of a point, for rooflines and projections (2 FLOPs per multiply-add).

What the transforms did enters only through what they declared: the compute precision and the FLOP
scales of a structured prune; no name of a transform is looked at here.
"""

from __future__ import annotations

from typing import Any

from ..config import RunPoint
from ..records.schema import DecodeStep, Work
from . import flops

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


def point_work(config: Any, task: str, point: RunPoint, weight_bytes: int, compute_precision: str,
               matmul_scale: float = 1.0, attention_scale: float = 1.0, lookup_bytes: int = 0) -> Work:
    """The work of one query. `weight_bytes`: the weights it streams; `lookup_bytes`: embedding tables left out
    of them (a query gathers a few rows), kept in the breakdown so the total can be checked."""
    act_bytes = DTYPE_BYTES[point.variant.precision]
    fwd = flops.forward_flops(config, task, point.batch_size, point.seq_len)
    total = fwd["linear"] * matmul_scale + fwd["attention"] * attention_scale + fwd["lm_head"]
    moved = {**flops.bytes_moved(config, point.batch_size, point.seq_len, weight_bytes, act_bytes),
             "lookup_tables_excluded": lookup_bytes}
    decode = None
    new_tokens = point.scenario.options.get("new_tokens", 32) if point.scenario.name == "generate" else 0
    if new_tokens:
        context = point.seq_len + new_tokens // 2
        step = flops.decode_step_flops(config, point.batch_size, context)
        step_bytes = {**flops.bytes_moved(config, point.batch_size, 1, weight_bytes, act_bytes, decode_context=context),
                      "lookup_tables_excluded": lookup_bytes}
        step_flops = step["linear"] * matmul_scale + step["attention"] * attention_scale + step["lm_head"]
        decode = DecodeStep(flops=step_flops, bytes=step_bytes["total"], context=context,
                            intensity=flops.arithmetic_intensity(step_flops, step_bytes["total"]),
                            bytes_breakdown=step_bytes)
    return Work(flops=total, bytes=moved["total"], intensity=flops.arithmetic_intensity(total, moved["total"]),
                flops_breakdown=fwd, bytes_breakdown=moved, matmul_param_scale=matmul_scale,
                attention_head_scale=attention_scale, precision=point.variant.precision,
                compute_precision=compute_precision, convention=fwd["convention"] + "; " + moved["convention"],
                decode_step=decode)
