"""PyTorch with torch.compile (inductor), on CPU or CUDA.

Compilation happens when the session opens: the model is compiled and called on the point's inputs
until a call runs no new compilation, and that time is recorded as `compiled` in the session description,
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
from ...records.schema import CompileCounters, Compiled, SessionDescription
from .. import backends
from .eager import PyTorch, TorchSession

MAX_COMPILE_CALLS = 3  # calls on the point's own inputs until no new graph is compiled
NO_GENERATION = "generation on torch.compile is not wired: every new KV-cache length is a new shape"
NO_CONTINUOUS = ("transformers' continuous batching runs the eager model with its own paged attention, not the "
                 "compiled graph: it would not measure this variant")


class CompileOptions(BaseModel):
    """`backend_options` of a variant that runs on torch.compile."""

    model_config = ConfigDict(extra="forbid")
    mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default"
    dynamic: bool | None = Field(False, description="False: one shape per point (static); None: torch decides")
    fullgraph: bool = Field(False, description="True: a graph break is an error instead of a fallback to eager")
    freezing: bool = Field(True, description="inductor freezing: constant-fold and pre-pack weights (CPU)")


def _dynamo_counters() -> CompileCounters:
    from torch._dynamo.utils import counters

    breaks = dict(counters["graph_break"])
    return CompileCounters(graphs=int(counters["stats"].get("unique_graphs", 0)),
                           frames_compiled=int(counters["frames"].get("ok", 0)),
                           graph_breaks=int(sum(breaks.values())), graph_break_reasons=sorted(breaks)[:10])


class CompiledSession(TorchSession):
    """A TorchSession whose model is compiled. Its description adds dynamo's counters as they are when it is read
    (at the end of the point), beside those taken when compilation finished and when the traffic ended."""

    def __init__(self, base: TorchSession, compiled: Any, dynamic: bool | None):
        super().__init__(compiled, base.inputs, base.device, base.task, base._autocast)
        self.description = base.description
        self.dynamic = dynamic
        self.compiled: Compiled | None = None  # once compilation has finished

    def describe(self) -> SessionDescription:
        if self.compiled is None:
            return self.description
        return self.description.model_copy(
            update={"compiled": self.compiled.model_copy(update={"at_end": _dynamo_counters()})})

    def traffic_done(self) -> None:
        if self.compiled is not None:
            after = _dynamo_counters()
            self.compiled = self.compiled.model_copy(update={
                "after_traffic": after,
                "recompiled_in_traffic": after.frames_compiled - self.compiled.at_open.frames_compiled})

    def run_rows(self, rows: int) -> None:
        if self.dynamic is not True and rows != len(next(iter(self.inputs.values()))):
            raise Unsupported("torch.compile with static shapes recompiles for every new batch size, inside the "
                              "timed traffic: use backend_options {dynamic: true} for partial batches")
        super().run_rows(rows)

    def generate(self, *args, **kwargs) -> None:
        raise Unsupported(NO_GENERATION)

    def generate_batch(self, *args, **kwargs) -> list[list[int]]:
        raise Unsupported(NO_GENERATION)

    def embed_batch(self, prompts) -> dict:
        if self.dynamic is not True:
            raise Unsupported("torch.compile with static shapes recompiles for every new padded batch, inside the "
                              "traffic: use backend_options {dynamic: true} to serve requests")
        return super().embed_batch(prompts)

    def continuous_batching(self, settings) -> None:
        raise Unsupported(NO_CONTINUOUS)


@backends.register("torch-compile")
class TorchCompile(PyTorch):
    Options = CompileOptions
    reference = False
    engines = frozenset({"single", "static"})

    @classmethod
    def engine_refusal(cls, engine: str, task: str | None) -> str | None:
        if engine == "continuous":
            return NO_CONTINUOUS
        if task == "causal-lm":
            return NO_GENERATION
        return super().engine_refusal(engine, task)

    def open(self, artifact, loaded, inputs, ctx) -> CompiledSession:
        import torch
        import torch._dynamo
        import torch._inductor.config as inductor_config

        opts = CompileOptions.model_validate(ctx.backend_options)
        base = super().open(artifact, loaded, inputs, ctx)
        torch._dynamo.reset()
        inductor_config.freezing = opts.freezing
        compiled = torch.compile(base.model, mode=opts.mode, dynamic=opts.dynamic, fullgraph=opts.fullgraph)
        session = CompiledSession(base, compiled, opts.dynamic)
        calls_ms = []
        start = time.perf_counter()
        for _ in range(MAX_COMPILE_CALLS):
            frames = _dynamo_counters().frames_compiled
            call = time.perf_counter()
            session.run()
            calls_ms.append(round((time.perf_counter() - call) * 1e3, 3))
            if _dynamo_counters().frames_compiled == frames:
                break
        session.compiled = Compiled(
            compiler="inductor", compile_s=round(time.perf_counter() - start, 3), calls_ms=calls_ms,
            settings={"mode": opts.mode, "dynamic": opts.dynamic, "fullgraph": opts.fullgraph,
                      "freezing": opts.freezing},
            at_open=_dynamo_counters())
        return session
