"""FLOPs and bytes of one query of a point, for rooflines and projections (2 FLOPs per multiply-add).

What the transforms did enters only through what they declared: the compute precision and the FLOP
scales of a structured prune; no name of a transform is looked at here. What a query consists of enters
only through the phases its scenario declares (`WorkPhase`); no name of a scenario is looked at here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..records.schema import PhaseWork, Work
from . import flops

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


@dataclass(frozen=True)
class WorkPhase:
    """A timed phase of a query, as a scenario declares it: `forward` computes every position's logits; `prefill`
    (a generation's prompt pass) only the last position's and writes the KV cache; `decode` is one new token per
    row attending over `context` tokens."""

    name: Literal["forward", "prefill", "decode"]
    context: int | None = None


def point_work(config: Any, task: str, batch: int, seq: int, precision: str, phases: list[WorkPhase],
               weight_bytes: int, compute_precision: str, matmul_scale: float = 1.0, attention_scale: float = 1.0,
               lookup_bytes: int = 0) -> Work:
    """The work of one query (a plain forward) and of each declared phase. `weight_bytes`: the weights it streams;
    `lookup_bytes`: embedding tables left out of them (a query gathers a few rows), kept in the breakdown so the
    total can be checked."""
    act_bytes = DTYPE_BYTES[precision]

    def scaled(counted: dict) -> float:
        return counted["linear"] * matmul_scale + counted["attention"] * attention_scale + counted["lm_head"]

    def moved(**kwargs) -> dict:
        return {**flops.bytes_moved(config, batch, seq, weight_bytes, act_bytes, **kwargs),
                "lookup_tables_excluded": lookup_bytes}

    def phase_work(phase: WorkPhase) -> PhaseWork:
        if phase.name == "decode":
            counted, bytes_ = flops.decode_step_flops(config, batch, phase.context), moved(decode_context=phase.context)
            tokens = batch
        elif phase.name == "prefill":
            counted, bytes_ = flops.forward_flops(config, task, batch, seq, logits_per_row=1), moved(kv_cache=True)
            tokens = batch * seq
        else:
            counted, bytes_, tokens = flops.forward_flops(config, task, batch, seq), moved(), batch * seq
        return PhaseWork(name=phase.name, flops=scaled(counted), bytes=bytes_["total"], items=batch, tokens=tokens,
                         intensity=flops.arithmetic_intensity(scaled(counted), bytes_["total"]),
                         context=phase.context, flops_breakdown=counted, bytes_breakdown=bytes_)

    fwd = flops.forward_flops(config, task, batch, seq)
    total, fwd_bytes = scaled(fwd), moved()
    return Work(flops=total, bytes=fwd_bytes["total"], intensity=flops.arithmetic_intensity(total, fwd_bytes["total"]),
                flops_breakdown=fwd, bytes_breakdown=fwd_bytes, matmul_param_scale=matmul_scale,
                attention_head_scale=attention_scale, precision=precision, compute_precision=compute_precision,
                convention=fwd["convention"] + "; " + fwd_bytes["convention"], phases=[phase_work(p) for p in phases])
