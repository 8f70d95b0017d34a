"""FLOPs and bytes of one query of a point, for rooflines and projections (2 FLOPs per multiply-add).

What the transforms did enters only through what they declared: the compute precision and the FLOP
scales of a structured prune; no name of a transform is looked at here.
"""

from __future__ import annotations

from typing import Any

from ..config import RunPoint
from ..records.schema import DecodeStep, Prefill, Work
from . import flops

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


def point_work(config: Any, task: str, point: RunPoint, weight_bytes: int, compute_precision: str,
               matmul_scale: float = 1.0, attention_scale: float = 1.0, lookup_bytes: int = 0) -> Work:
    """The work of one query. `weight_bytes`: the weights it streams; `lookup_bytes`: embedding tables left out
    of them (a query gathers a few rows), kept in the breakdown so the total can be checked.

    A plain forward computes the logits of every position; a generation request's prefill only those of the
    last (`prefill`), then one decode step per new token (`decode_step`, at the mean context)."""
    act_bytes = DTYPE_BYTES[point.variant.precision]
    batch, seq = point.batch_size, point.seq_len

    def scaled(counted: dict) -> float:
        return counted["linear"] * matmul_scale + counted["attention"] * attention_scale + counted["lm_head"]

    def moved(**kwargs) -> dict:
        return {**flops.bytes_moved(config, batch, seq, weight_bytes, act_bytes, **kwargs),
                "lookup_tables_excluded": lookup_bytes}

    fwd = flops.forward_flops(config, task, batch, seq)
    total, fwd_bytes = scaled(fwd), moved()
    prefill = decode = None
    new_tokens = point.scenario.options.get("new_tokens", 32) if point.scenario.name == "generate" else 0
    if new_tokens:
        first = flops.forward_flops(config, task, batch, seq, logits_per_row=1)
        first_bytes = moved(kv_cache=True)
        prefill = Prefill(flops=scaled(first), bytes=first_bytes["total"],
                          intensity=flops.arithmetic_intensity(scaled(first), first_bytes["total"]),
                          flops_breakdown=first, bytes_breakdown=first_bytes)
        context = seq + new_tokens // 2
        step = flops.decode_step_flops(config, batch, context)
        step_bytes = moved(decode_context=context)
        decode = DecodeStep(flops=scaled(step), bytes=step_bytes["total"], context=context,
                            intensity=flops.arithmetic_intensity(scaled(step), step_bytes["total"]),
                            bytes_breakdown=step_bytes)
    return Work(flops=total, bytes=fwd_bytes["total"], intensity=flops.arithmetic_intensity(total, fwd_bytes["total"]),
                flops_breakdown=fwd, bytes_breakdown=fwd_bytes, matmul_param_scale=matmul_scale,
                attention_head_scale=attention_scale, precision=point.variant.precision,
                compute_precision=compute_precision, convention=fwd["convention"] + "; " + fwd_bytes["convention"],
                prefill=prefill, decode_step=decode)
