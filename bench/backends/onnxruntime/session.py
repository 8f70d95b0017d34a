"""ONNX Runtime sessions: the execution provider of the point's device, and a zero-argument run that measures
the model, not host transfers (IO binding on a device with memory of its own, for full and partial batches
alike)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...errors import Unsupported


@dataclass(frozen=True)
class Provider:
    """How ONNX Runtime runs on one of the harness's devices."""

    name: str  # ORT's execution provider
    ort_device: str  # where ORT places tensors for it (OrtValue, IO binding)
    fallback: tuple[str, ...] = ()  # providers for the nodes this one lacks
    io_binding: bool = False  # inputs copied to the device once and outputs kept there, outside the timed call
    fp16_kernels: bool = False  # runs fp16 graphs natively (the CPU provider has few fp16 kernels)
    install: str = ""  # what to install where the provider is missing
    start_error: str = ""  # in ORT's error when the provider's own libraries fail to load


PROVIDERS = {  # the engine's devices: a device with no entry here is refused at plan time
    "cpu": Provider("CPUExecutionProvider", "cpu"),
    "cuda": Provider("CUDAExecutionProvider", "cuda", fallback=("CPUExecutionProvider",), io_binding=True,
                     fp16_kernels=True, install="install onnxruntime-gpu for CUDA", start_error="CUDA"),
}
GRAPH_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                "all": "ORT_ENABLE_ALL"}


def make_session(path: Path, provider: str, graph_opt_level: str = "all", intra_op_threads: int = 0,
                 inter_op_threads: int = 0):
    """An InferenceSession on the provider of device `provider` (a key of PROVIDERS); Unsupported if that
    provider cannot run here.

    With inter_op_threads > 1 the session runs independent nodes in parallel (ORT_PARALLEL); otherwise
    sequentially, where ORT ignores inter_op threads. A provider's session keeps its fallbacks (CUDA: the CPU
    provider) for nodes it lacks, and is refused if ORT silently fell back (e.g. CUDA libraries missing).
    """
    import onnxruntime as ort

    if provider not in PROVIDERS:
        raise ValueError(f"provider {provider!r}: use one of {sorted(PROVIDERS)}")
    if graph_opt_level not in GRAPH_LEVELS:
        raise ValueError(f"graph_opt_level {graph_opt_level!r}: use one of {list(GRAPH_LEVELS)}")
    spec = PROVIDERS[provider]
    name = spec.name
    available = ort.get_available_providers()
    if name not in available:
        raise Unsupported(f"ONNX Runtime {ort.__version__} has no {name} here (installed providers: "
                          f"{', '.join(available)}){'; ' + spec.install if spec.install else ''}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_LEVELS[graph_opt_level])
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = inter_op_threads
    opts.execution_mode = (ort.ExecutionMode.ORT_PARALLEL if inter_op_threads > 1
                           else ort.ExecutionMode.ORT_SEQUENTIAL)
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=[name, *spec.fallback])
    except Exception as exc:
        if spec.start_error and spec.start_error in str(exc):
            raise Unsupported(f"{name} failed to start: {str(exc)[:300]}") from exc
        raise
    if session.get_providers()[0] != name:
        raise Unsupported(f"{name} is installed but the session fell back to {session.get_providers()} "
                          "(CUDA/cuDNN libraries missing or incompatible)")
    return session


def run_fn(session: Any, inputs: dict[str, np.ndarray], provider: str) -> Callable[[], Any]:
    """A zero-argument callable that runs one inference and returns when it is done.

    Inputs the graph does not take are dropped. On a provider with IO binding (CUDA) the inputs are copied to
    the device once, here, and outputs stay on the device, so the timed call measures the model, not host
    transfers; `synchronize_outputs` waits for the device to finish.
    """
    names = {i.name for i in session.get_inputs()}
    feed = {k: np.ascontiguousarray(v) for k, v in inputs.items() if k in names}
    missing = names - set(feed)
    if missing:
        raise ValueError(f"inputs missing for the ONNX graph: {sorted(missing)}")
    spec = PROVIDERS[provider]
    if not spec.io_binding:
        return lambda: session.run(None, feed)
    import onnxruntime as ort

    binding = session.io_binding()
    device_inputs = {k: ort.OrtValue.ortvalue_from_numpy(v, spec.ort_device, 0) for k, v in feed.items()}
    for name, value in device_inputs.items():
        binding.bind_ortvalue_input(name, value)
    for out in session.get_outputs():
        binding.bind_output(out.name, spec.ort_device, 0)

    def run() -> None:
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()

    run.device_inputs = device_inputs  # keep the device buffers alive as long as the callable
    run.binding = binding
    return run
