"""ONNX Runtime backend: export once (cached), then a session on the CPU or CUDA provider.

Graph-stage transforms (fusions, int8, int4, fp16) are applied by the pipeline between `export` and
`open`; precision on ORT is set by those transforms, so the backend runs fp32 graphs only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from . import Backend, Session, backends
from .onnx_export import DEFAULT_OPSET, cached_export, onnx_file_bytes
from .ort_session import make_session, run_fn


class OrtOptions(BaseModel):
    """`backend_options` of a variant that runs on ONNX Runtime."""

    model_config = ConfigDict(extra="forbid")
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    opset: int = DEFAULT_OPSET


class OrtSession(Session):
    """Forward passes only. Generation is not offered: the export has no past-key-value inputs, so each
    decode step would recompute the whole prefix and misstate decode cost (see README)."""

    def __init__(self, session: Any, inputs: dict[str, np.ndarray], provider: str, info: dict):
        self.session, self.provider, self.info = session, provider, info
        self._input_names = {i.name for i in session.get_inputs()}
        self._inputs = self._feed(inputs)
        self._run = run_fn(session, self._inputs, provider)
        # one bound runner per partial batch, made before any clock starts: on CUDA each keeps its inputs on
        # the device (IO binding), so dynamic batching times the model and not host copies
        rows = len(next(iter(self._inputs.values())))
        self._row_runs = {n: run_fn(session, {k: v[:n] for k, v in self._inputs.items()}, provider)
                          for n in range(1, rows + 1)}

    def _feed(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v for k, v in inputs.items() if k in self._input_names}

    def run(self) -> None:
        self._run()

    def run_rows(self, rows: int) -> None:
        self._row_runs[rows]()

    def infer(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.session.run(None, self._feed(inputs))[0], dtype=np.float32)


@backends.register("onnxruntime")
class OnnxRuntime(Backend):
    stages = frozenset({"torch", "onnx"})
    precisions = frozenset({"fp32"})  # lower precisions come from graph transforms (e.g. `ort-fp16`)
    Options = OrtOptions

    def export(self, model, loaded, inputs, ctx) -> Path:
        import torch

        opts = OrtOptions.model_validate(ctx.backend_options)
        output_name = "logits" if loaded.task == "causal-lm" else "last_hidden_state"
        example = {k: torch.from_numpy(v) for k, v in inputs.items()}
        key = {**ctx.model_key, "task": loaded.task}
        path, hit = cached_export(model, example, output_name, key, ctx.cache_dir / "onnx", opset=opts.opset)
        ctx.export_info = {"opset": opts.opset, "cache_hit": hit, "path": str(path)}
        return path

    def open(self, artifact, loaded, inputs, ctx) -> Session:
        opts = OrtOptions.model_validate(ctx.backend_options)
        provider = "cuda" if ctx.device == "cuda" else "cpu"
        session = make_session(artifact, provider, opts.graph_optimization_level,
                               ctx.intra_op_threads, ctx.inter_op_threads)
        info: dict[str, Any] = {"export": ctx.export_info, "provider": provider,
                                "providers": session.get_providers(),
                                "graph_optimization_level": opts.graph_optimization_level,
                                "model_file": str(artifact), "model_file_bytes": onnx_file_bytes(artifact),
                                "intra_op_threads": ctx.intra_op_threads, "inter_op_threads": ctx.inter_op_threads}
        return OrtSession(session, inputs, provider, info)
