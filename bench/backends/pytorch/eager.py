"""PyTorch eager backend, on CPU or CUDA."""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Sequence

import numpy as np

from ...devices import get_device
from ...errors import Unsupported
from ...records.schema import Threads
from .. import Backend, Session, backends
from ..batching import Rows, eos_token_ids, left_pad, right_pad


class IntraOpThreads:
    """The intra-op thread count of the thread that opened the session (where the point set it), applied once in
    each other thread that runs the model (the engines' workers, transformers' continuous-batching loop): a new
    thread starts from OpenMP's default, every core, not from `torch.set_num_threads` called elsewhere."""

    def __init__(self):
        import torch

        self.count = torch.get_num_threads()
        self._applied = threading.local()

    def apply(self) -> None:
        if not getattr(self._applied, "done", False):
            import torch

            torch.set_num_threads(self.count)
            self._applied.done = True


class TorchSession(Session):
    def __init__(self, model: Any, inputs: dict[str, Any], device: str, task: str, autocast: Callable[[], Any]):
        self.model, self.inputs, self.device, self.task = model, inputs, device, task
        self._device = get_device(device)
        self._autocast = autocast
        self._extra = {"use_cache": False} if task == "causal-lm" else {}
        self.threads = IntraOpThreads()

    def _forward(self, inputs: dict[str, Any]) -> Any:
        import torch

        with torch.inference_mode(), self._autocast():
            return self.model(**inputs, **self._extra)

    def run(self) -> None:
        self._forward(self.inputs)
        self._device.synchronize()

    def run_rows(self, rows: int) -> None:
        self._forward({k: v[:rows] for k, v in self.inputs.items()})
        self._device.synchronize()

    def infer(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        out = self._forward({k: torch.from_numpy(v).to(self.device) for k, v in inputs.items()})
        primary = out.logits if self.task == "causal-lm" else out.last_hidden_state
        return primary.float().cpu().numpy()

    def generate(self, new_tokens: int, on_token: Callable[[int], None], rows: int | None = None) -> None:
        from .generate import greedy_generate

        if self.task != "causal-lm":
            raise Unsupported("generation needs a causal LM")
        with self._autocast():
            greedy_generate(self.model, self.inputs["input_ids"][:rows], self.inputs["attention_mask"][:rows],
                            new_tokens, on_token, self.device)

    def generate_batch(self, prompts: list[Sequence[int]], output_tokens: list[int],
                       on_token: Callable[[int, int], None],
                       stop_at_eos: Sequence[bool] | None = None) -> list[list[int]]:
        import torch

        from .generate import greedy_steps

        if self.task != "causal-lm":
            raise Unsupported("generation needs a causal LM")
        eos = eos_token_ids(getattr(self.model, "generation_config", None)) or eos_token_ids(self.model.config)
        rows = Rows(output_tokens, on_token, stop_at_eos, eos)
        self.threads.apply()
        ids, mask, positions = (torch.from_numpy(a).to(self.device) for a in left_pad(prompts))
        with self._autocast():
            for next_token in greedy_steps(self.model, ids, mask, self.device, positions):
                if not rows.take(next_token[:, 0].tolist()):
                    break
        return rows.tokens

    def embed_batch(self, prompts: list[Sequence[int]]) -> dict:
        import torch

        ids, mask, padding = right_pad(prompts)
        self.threads.apply()
        self._forward({"input_ids": torch.from_numpy(ids).to(self.device),
                       "attention_mask": torch.from_numpy(mask).to(self.device)})
        self._device.synchronize()
        return padding

    def continuous_batching(self, settings: Any) -> Any:
        from .continuous import TransformersContinuousBatching

        if self.task != "causal-lm":
            raise Unsupported("continuous batching schedules decode steps: it serves causal LMs, not "
                              f"{self.task} models")
        if self._autocast is not contextlib.nullcontext:
            raise Unsupported("transformers' continuous batching runs the model on its own thread, outside this "
                              "session's autocast (thread-local): it would compute in the weights' precision, not "
                              "the variant's; cast the weights instead (precision_mode: cast)")
        return TransformersContinuousBatching.build(self.model, settings, self.threads)


def autocast_factory(ctx: Any) -> Callable[[], Any]:
    """A fresh autocast context per forward when the precision stage chose autocast, else a no-op."""
    if ctx.precision == "fp32" or ctx.precision_mode != "autocast":
        return contextlib.nullcontext
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[ctx.precision]
    return lambda: torch.autocast(device_type=ctx.device, dtype=dtype)


@backends.register("pytorch")
class PyTorch(Backend):
    devices = frozenset({"cpu", "cuda"})  # torch device types it runs on
    libraries = ("torch", "transformers", "torchao")
    reference = True
    engines = frozenset({"single", "static", "continuous"})

    @classmethod
    def engine_refusal(cls, engine: str, task: str | None) -> str | None:
        if engine == "continuous" and task not in (None, "causal-lm"):
            return f"continuous batching schedules decode steps: it serves causal LMs, not {task} models"
        return super().engine_refusal(engine, task)

    def open(self, artifact, loaded, inputs, ctx) -> TorchSession:
        import torch

        device = get_device(ctx.device)
        device.require()
        model = artifact.to(ctx.device)
        tensors = {k: torch.from_numpy(v).to(ctx.device) for k, v in inputs.items()}
        session = TorchSession(model, tensors, ctx.device, loaded.task, autocast_factory(ctx))
        session.description = self.describe(
            ctx, engine="torch", engine_version=torch.__version__, precision_mode=ctx.precision_mode,
            threads=Threads(intra_op=torch.get_num_threads(), inter_op=torch.get_num_interop_threads()),
            properties=device.numerics())
        return session
