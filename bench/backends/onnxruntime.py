"""ONNX Runtime backend: export once (cached), apply graph transforms, run on the CPU or CUDA provider."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from ..errors import Unsupported
from ..variants import transforms
from . import Backend, Session, backends

DEFAULT_OPSET = 18  # opset 17 lacks Split(num_outputs), which dynamo emits for GPT-2


class OrtOptions(BaseModel):
    """`backend_options` of a variant that runs on ONNX Runtime."""

    model_config = ConfigDict(extra="forbid")
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    opset: int = DEFAULT_OPSET


class OrtSession(Session):
    """Forward passes only. Generation is not offered: the export has no past-key-value inputs, so each
    decode step would recompute the whole prefix and misstate decode cost (see README)."""

    def __init__(self, session: Any, inputs: dict[str, np.ndarray], provider: str, info: dict):
        from . import onnx_tools

        self.session, self.provider, self.info = session, provider, info
        self._input_names = {i.name for i in session.get_inputs()}
        self._inputs = self._feed(inputs)
        self._run = onnx_tools.run_fn(session, self._inputs, provider)

    def _feed(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v for k, v in inputs.items() if k in self._input_names}

    def run(self) -> None:
        self._run()

    def run_rows(self, rows: int) -> None:
        self.session.run(None, {k: v[:rows] for k, v in self._inputs.items()})

    def infer(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.session.run(None, self._feed(inputs))[0], dtype=np.float32)


@backends.register("onnxruntime")
class OnnxRuntime(Backend):
    stages = frozenset({"torch", "onnx"})
    Options = OrtOptions

    def prepare(self, loaded, variant, device, inputs, ctx) -> Session:
        import torch

        from . import onnx_tools

        opts = OrtOptions.model_validate(variant.backend_options)
        if variant.precision != "fp32":
            raise Unsupported("ONNX Runtime precision is set by graph transforms (e.g. `ort-fp16`), "
                              f"not by `precision: {variant.precision}`")
        provider = "cuda" if device == "cuda" else "cpu"
        output_name = "logits" if loaded.task == "causal-lm" else "last_hidden_state"
        example = {k: torch.from_numpy(v) for k, v in inputs.items()}
        key = {**ctx.model_key, "task": loaded.task, "opset": opts.opset}
        path, hit = onnx_tools.cached_export(loaded.model, example, output_name, key, ctx.cache_dir / "onnx",
                                             opset=opts.opset)
        info: dict[str, Any] = {"export": {"opset": opts.opset, "cache_hit": hit, "path": str(path)}, "graph": []}
        for spec in variant.transforms:
            cls = transforms.get(spec.name)
            if cls.stage != "onnx":
                continue
            path, tinfo = cls().apply(path, cls.Options.model_validate(spec.options), ctx)
            info["graph"].append({"name": spec.name, **tinfo})
        session = onnx_tools.make_session(path, provider, opts.graph_optimization_level,
                                          ctx.intra_op_threads, ctx.inter_op_threads)
        info.update({"provider": provider, "providers": session.get_providers(),
                     "graph_optimization_level": opts.graph_optimization_level,
                     "model_file": str(path), "model_file_bytes": onnx_tools.onnx_file_bytes(path),
                     "intra_op_threads": ctx.intra_op_threads, "inter_op_threads": ctx.inter_op_threads})
        return OrtSession(session, inputs, provider, info)
