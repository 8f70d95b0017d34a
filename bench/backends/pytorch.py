"""PyTorch eager backend, on CPU or CUDA."""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import numpy as np

from ..errors import Unsupported
from . import Backend, Session, backends

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def check_precision(precision: str, device: str, cpu_flags: frozenset[str]) -> None:
    """Refuse precisions this device has no fast path for, rather than time an emulation."""
    if device == "cpu" and precision == "bf16" and not ({"avx512_bf16", "amx_bf16"} & cpu_flags):
        raise Unsupported("bf16 on this CPU: no avx512_bf16 or amx_bf16 flag, so bf16 matmuls would be emulated")
    if device == "cpu" and precision == "fp16" and "amx_fp16" not in cpu_flags:
        raise Unsupported("fp16 on CPU: no amx_fp16 flag; CPU fp16 GEMMs are converted, not accelerated")


class TorchSession(Session):
    def __init__(self, model: Any, inputs: dict[str, Any], device: str, task: str,
                 autocast: Callable[[], Any], info: dict):
        self.model, self.inputs, self.device, self.task = model, inputs, device, task
        self._autocast = autocast
        self.info = info
        self._extra = {"use_cache": False} if task == "causal-lm" else {}

    def _sync(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()

    def _forward(self, inputs: dict[str, Any]) -> Any:
        import torch

        with torch.inference_mode(), self._autocast():
            return self.model(**inputs, **self._extra)

    def run(self) -> None:
        self._forward(self.inputs)
        self._sync()

    def run_rows(self, rows: int) -> None:
        self._forward({k: v[:rows] for k, v in self.inputs.items()})
        self._sync()

    def infer(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        out = self._forward({k: torch.from_numpy(v).to(self.device) for k, v in inputs.items()})
        primary = out.logits if self.task == "causal-lm" else out.last_hidden_state
        return primary.float().cpu().numpy()

    def generate(self, new_tokens: int, on_token: Callable[[int], None], rows: int | None = None) -> None:
        from ..errors import Unsupported
        from .torch_generate import greedy_generate

        if self.task != "causal-lm":
            raise Unsupported("generation needs a causal LM")
        with self._autocast():
            greedy_generate(self.model, self.inputs["input_ids"][:rows], self.inputs["attention_mask"][:rows],
                            new_tokens, on_token, self.device)


@backends.register("pytorch")
class PyTorch(Backend):
    stages = frozenset({"torch"})

    def prepare(self, loaded, variant, device, inputs, ctx) -> Session:
        import torch

        if device == "cuda" and not torch.cuda.is_available():
            raise Unsupported("CUDA is not available on this machine")
        check_precision(variant.precision, device, ctx.cpu_flags)
        dtype = getattr(torch, DTYPES[variant.precision])
        model = loaded.model
        autocast: Callable[[], Any] = contextlib.nullcontext
        if variant.precision != "fp32":
            if variant.precision_mode == "cast":
                model = model.to(dtype)
            else:
                autocast = lambda: torch.autocast(device_type=device, dtype=dtype)  # noqa: E731 - per forward
        model = model.to(device)
        tensors = {k: torch.from_numpy(v).to(device) for k, v in inputs.items()}
        info = {"precision": variant.precision, "precision_mode": variant.precision_mode,
                "torch": torch.__version__, "intra_op_threads": torch.get_num_threads(),
                "inter_op_threads": torch.get_num_interop_threads()}
        if device == "cuda":
            info["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        return TorchSession(model, tensors, device, loaded.task, autocast, info)
