"""PyTorch with torch.compile (inductor), on CPU or CUDA.

Compilation happens when the session opens: the model is compiled and called on the point's inputs
until a call runs no new compilation, and that time is recorded as `compile` in the backend info,
apart from the scenario's warm-up and timed loop. Dynamo's counters are read after that (graphs, graph
breaks with their reasons), again when the timed traffic ends (`recompiled_in_traffic`: frames compiled
inside the warm-up and timed loop, which a static-shape point should never do; the report flags it), and
when the record is written (`at_end`: the quality check's other shapes compile there). On CPU, inductor's
`freezing` folds the weights into the graph and pre-packs them for oneDNN, which is what makes compiled CPU
inference fast; it is on by default and recorded.

It composes with precision (the model is cast before compiling) and with torch-stage transforms whose
modules dynamo can trace (torchao quantization: `int8-dynamic` with `api: torchao`). A point that fails
to compile becomes a `failed` record with the compiler's reason; a combination known not to compose is
refused at plan time (`stages`) or is `unsupported` with the reason.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ...errors import Unsupported
from .. import Backend, Session, backends
from .eager import PyTorch, TorchSession

MAX_COMPILE_CALLS = 3  # calls on the point's own inputs until no new graph is compiled


class CompileOptions(BaseModel):
    """`backend_options` of a variant that runs on torch.compile."""

    model_config = ConfigDict(extra="forbid")
    mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default"
    dynamic: bool | None = Field(False, description="False: one shape per point (static); None: torch decides")
    fullgraph: bool = Field(False, description="True: a graph break is an error instead of a fallback to eager")
    freezing: bool = Field(True, description="inductor freezing: constant-fold and pre-pack weights (CPU)")


def _dynamo_counters() -> dict:
    from torch._dynamo.utils import counters

    breaks = dict(counters["graph_break"])
    return {"graphs": int(counters["stats"].get("unique_graphs", 0)),
            "frames_compiled": int(counters["frames"].get("ok", 0)),
            "graph_breaks": int(sum(breaks.values())), "graph_break_reasons": sorted(breaks)[:10]}


class CompiledSession(TorchSession):
    """A TorchSession whose model is compiled. Its info adds dynamo's counters as they are when it is read
    (at the end of the point), beside those taken when compilation finished and when the traffic ended."""

    def __init__(self, base: TorchSession, compiled: Any, dynamic: bool | None):
        super().__init__(compiled, base.inputs, base.device, base.task, base._autocast, dict(base.info))
        self.dynamic = dynamic

    @property
    def info(self) -> dict:
        compile_info = self._info.get("compile")
        return {**self._info, "compile": {**compile_info, "at_end": _dynamo_counters()}} if compile_info else self._info

    @info.setter
    def info(self, value: dict) -> None:
        self._info = value

    def traffic_done(self) -> None:
        compile_info = self._info.get("compile")
        if compile_info:
            after = _dynamo_counters()
            compile_info["after_traffic"] = after
            at_open = compile_info["at_open"]["frames_compiled"]
            compile_info["recompiled_in_traffic"] = after["frames_compiled"] - at_open

    def run_rows(self, rows: int) -> None:
        if self.dynamic is not True and rows != len(next(iter(self.inputs.values()))):
            raise Unsupported("torch.compile with static shapes recompiles for every new batch size, inside the "
                              "timed traffic: use backend_options {dynamic: true} for partial batches")
        super().run_rows(rows)

    def generate(self, *args, **kwargs) -> None:
        raise Unsupported("generation on torch.compile is not wired: every new KV-cache length is a new shape")


@backends.register("torch-compile")
class TorchCompile(Backend):
    Options = CompileOptions

    def open(self, artifact, loaded, inputs, ctx) -> Session:
        import torch
        import torch._dynamo
        import torch._inductor.config as inductor_config

        opts = CompileOptions.model_validate(ctx.backend_options)
        base = PyTorch().open(artifact, loaded, inputs, ctx)
        torch._dynamo.reset()
        inductor_config.freezing = opts.freezing
        compiled = torch.compile(base.model, mode=opts.mode, dynamic=opts.dynamic, fullgraph=opts.fullgraph)
        session = CompiledSession(base, compiled, opts.dynamic)
        calls_ms = []
        start = time.perf_counter()
        for _ in range(MAX_COMPILE_CALLS):
            frames = _dynamo_counters()["frames_compiled"]
            call = time.perf_counter()
            session.run()
            calls_ms.append(round((time.perf_counter() - call) * 1e3, 3))
            if _dynamo_counters()["frames_compiled"] == frames:
                break
        session.info["compile"] = {
            "backend": "inductor", "mode": opts.mode, "dynamic": opts.dynamic, "fullgraph": opts.fullgraph,
            "freezing": opts.freezing, "torch": torch.__version__,
            "compile_s": round(time.perf_counter() - start, 3), "calls_ms": calls_ms,
            "at_open": _dynamo_counters(),
            "note": "compile_s: compilation and the calls until one compiled nothing new, on the point's inputs; "
                    "outside the scenario's warm-up and timed loop",
        }
        return session
