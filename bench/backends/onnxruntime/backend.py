"""ONNX Runtime backend: export once (cached), then a session on the execution provider of the point's device.

Causal LMs are exported with a KV cache (`ort_decoder`): one graph serves forward passes (empty cache, logits
at every position), quality (perplexity) and greedy generation, so all three measure the same graph.
Graph-stage transforms (fusions, int8, int4, fp16) are applied by the pipeline between `export` and
`open`; precision on ORT is set by those transforms, so the backend runs fp32 graphs only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from ...errors import Unsupported
from ...records.schema import Threads
from .. import Backend, Session, backends
from ..batching import Rows, eos_token_ids, left_pad, right_pad
from . import decoder as ort_decoder
from .export import DEFAULT_OPSET, cached_export, export_info, onnx_file_bytes, onnx_lookup_table_bytes
from .session import PROVIDERS, make_session, run_fn


class OrtOptions(BaseModel):
    """`backend_options` of a variant that runs on ONNX Runtime."""

    model_config = ConfigDict(extra="forbid")
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    opset: int = DEFAULT_OPSET


class OrtSession(Session):
    """Forward passes on any graph; greedy generation on a decoder graph with a KV cache. A graph without
    one is refused for generation: each decode step would recompute the whole prefix and misstate decode cost."""

    def __init__(self, session: Any, inputs: dict[str, np.ndarray], provider: str,
                 eos_token_ids: frozenset[int] = frozenset()):
        self.session, self.provider, self.eos_token_ids = session, provider, eos_token_ids
        self._input_names = {i.name for i in session.get_inputs()}
        self._decoder = (ort_decoder.CachedDecoder(session, provider)
                         if ort_decoder.is_decoder_graph(self._input_names) else None)
        self._prompt = inputs
        self._inputs = self._feed(inputs)
        self._run = run_fn(session, self._inputs, provider)
        # one bound runner per partial batch, made before any clock starts: on CUDA each keeps its inputs on
        # the device (IO binding), so dynamic batching times the model and not host copies
        rows = len(next(iter(inputs.values())))
        self._row_runs = {n: run_fn(session, self._feed({k: v[:n] for k, v in inputs.items()}), provider)
                          for n in range(1, rows + 1)}

    def _feed(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The graph's inputs for one full-sequence forward (a decoder's cache empty, logits everywhere)."""
        if self._decoder:
            inputs = {**inputs, **ort_decoder.extra_inputs(self.session.get_inputs(), *inputs["input_ids"].shape)}
        return {k: v for k, v in inputs.items() if k in self._input_names}

    def run(self) -> None:
        self._run()

    def run_rows(self, rows: int) -> None:
        self._row_runs[rows]()

    def infer(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.session.run(None, self._feed(inputs))[0], dtype=np.float32)

    def _require_decoder(self) -> Any:
        if self._decoder is None:
            raise Unsupported("this ONNX graph has no past-key-value inputs (not a causal LM exported with a KV "
                              "cache): generating on it would recompute the whole prefix every token")
        return self._decoder

    def generate(self, new_tokens: int, on_token: Callable[[int], None], rows: int | None = None) -> np.ndarray:
        """As `Session.generate`; returns the tokens [rows, new_tokens]."""
        return ort_decoder.greedy_generate(self._require_decoder(), self._prompt["input_ids"][:rows],
                                           self._prompt["attention_mask"][:rows], new_tokens, on_token)

    def generate_batch(self, prompts: list[Sequence[int]], output_tokens: list[int],
                       on_token: Callable[[int, int], None],
                       stop_at_eos: Sequence[bool] | None = None) -> list[list[int]]:
        decoder = self._require_decoder()
        rows = Rows(output_tokens, on_token, stop_at_eos, self.eos_token_ids)
        for tokens in ort_decoder.greedy_steps(decoder, *left_pad(prompts)):
            if not rows.take(tokens.tolist()):
                break
        return rows.tokens

    def embed_batch(self, prompts: list[Sequence[int]]) -> dict:
        ids, mask, padding = right_pad(prompts)
        self.session.run(None, self._feed({"input_ids": ids, "attention_mask": mask,
                                           "token_type_ids": np.zeros_like(ids)}))
        return padding


@backends.register("onnxruntime")
class OnnxRuntime(Backend):
    stages = frozenset({"torch", "onnx"})
    precisions = frozenset({"fp32"})  # lower precisions come from graph transforms (e.g. `ort-fp16`)
    devices = frozenset(PROVIDERS)  # the devices it has an execution provider for
    libraries = ("onnxruntime", "onnxruntime-gpu", "onnx")
    Options = OrtOptions
    engines = frozenset({"single", "static"})

    @classmethod
    def engine_refusal(cls, engine: str, task: str | None) -> str | None:
        if engine == "continuous":
            return ("ONNX Runtime has no continuous batching here: the continuous engine is transformers' own, which "
                    "runs the PyTorch model (use the static engine, or backend pytorch)")
        return super().engine_refusal(engine, task)

    def export(self, model, loaded, inputs, ctx) -> Path:
        import torch

        opts = OrtOptions.model_validate(ctx.backend_options)
        example = {k: torch.from_numpy(v) for k, v in inputs.items()}
        key = {**ctx.model_key, "task": loaded.task}
        if loaded.task == "causal-lm":
            path, hit = ort_decoder.cached_decoder_export(model, example["input_ids"], example["attention_mask"],
                                                          key, ctx.cache_dir / "onnx", opts.opset)
        else:
            path, hit = cached_export(model, example, "last_hidden_state", key, ctx.cache_dir / "onnx", opset=opts.opset)
        found = {k: v for k, v in export_info(path).items() if k not in ("inputs", "outputs")}
        ctx.export_info = {"opset": opts.opset, **found, "cache_hit": hit, "path": str(path)}
        return path

    def open(self, artifact, loaded, inputs, ctx) -> OrtSession:
        import onnxruntime

        opts = OrtOptions.model_validate(ctx.backend_options)
        provider = ctx.device  # a key of PROVIDERS: the plan refuses devices the engine has none for (`devices`)
        session = make_session(artifact, provider, opts.graph_optimization_level,
                               ctx.intra_op_threads, ctx.inter_op_threads)
        eos = eos_token_ids(getattr(loaded.model, "generation_config", None)) or eos_token_ids(loaded.model.config)
        opened = OrtSession(session, inputs, provider, eos)
        opened.description = self.describe(
            ctx, engine="onnxruntime", engine_version=onnxruntime.__version__, file=str(artifact),
            file_bytes=onnx_file_bytes(artifact), lookup_table_bytes=onnx_lookup_table_bytes(artifact),
            threads=Threads(intra_op=ctx.intra_op_threads, inter_op=ctx.inter_op_threads),
            properties={"export": ctx.export_info, "providers": session.get_providers(),
                        "graph_optimization_level": opts.graph_optimization_level})
        return opened
