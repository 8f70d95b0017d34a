"""ONNX Runtime sessions: the CPU or CUDA provider, and a zero-argument run that measures the model, not
host transfers (IO binding on CUDA, for full and partial batches alike)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...errors import Unsupported

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
GRAPH_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                "all": "ORT_ENABLE_ALL"}


def make_session(path: Path, provider: str, graph_opt_level: str = "all", intra_op_threads: int = 0,
                 inter_op_threads: int = 0):
    """An InferenceSession on the CPU or CUDA provider; Unsupported if that provider cannot run here.

    With inter_op_threads > 1 the session runs independent nodes in parallel (ORT_PARALLEL); otherwise
    sequentially, where ORT ignores inter_op threads. CUDA sessions keep the CPU provider as fallback for
    nodes CUDA lacks, and are refused if ORT silently fell back to CPU (e.g. CUDA libraries missing).
    """
    import onnxruntime as ort

    if provider not in PROVIDERS:
        raise ValueError(f"provider {provider!r}: use one of {sorted(PROVIDERS)}")
    if graph_opt_level not in GRAPH_LEVELS:
        raise ValueError(f"graph_opt_level {graph_opt_level!r}: use one of {list(GRAPH_LEVELS)}")
    name = PROVIDERS[provider]
    available = ort.get_available_providers()
    if name not in available:
        raise Unsupported(f"ONNX Runtime {ort.__version__} has no {name} here (installed providers: "
                          f"{', '.join(available)}); install onnxruntime-gpu for CUDA")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_LEVELS[graph_opt_level])
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = inter_op_threads
    opts.execution_mode = (ort.ExecutionMode.ORT_PARALLEL if inter_op_threads > 1
                           else ort.ExecutionMode.ORT_SEQUENTIAL)
    providers = [name] if provider == "cpu" else [name, "CPUExecutionProvider"]
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:
        if provider == "cuda" and "CUDA" in str(exc):
            raise Unsupported(f"CUDAExecutionProvider failed to start: {str(exc)[:300]}") from exc
        raise
    if session.get_providers()[0] != name:
        raise Unsupported(f"{name} is installed but the session fell back to {session.get_providers()} "
                          "(CUDA/cuDNN libraries missing or incompatible)")
    return session


def run_fn(session: Any, inputs: dict[str, np.ndarray], provider: str) -> Callable[[], Any]:
    """A zero-argument callable that runs one inference and returns when it is done.

    Inputs the graph does not take are dropped. On CUDA the inputs are copied to the device once, here, and
    IO binding keeps outputs on the device, so the timed call measures the model, not host transfers;
    `synchronize_outputs` waits for the device to finish.
    """
    names = {i.name for i in session.get_inputs()}
    feed = {k: np.ascontiguousarray(v) for k, v in inputs.items() if k in names}
    missing = names - set(feed)
    if missing:
        raise ValueError(f"inputs missing for the ONNX graph: {sorted(missing)}")
    if provider != "cuda":
        return lambda: session.run(None, feed)
    import onnxruntime as ort

    binding = session.io_binding()
    device_inputs = {k: ort.OrtValue.ortvalue_from_numpy(v, "cuda", 0) for k, v in feed.items()}
    for name, value in device_inputs.items():
        binding.bind_ortvalue_input(name, value)
    for out in session.get_outputs():
        binding.bind_output(out.name, "cuda", 0)

    def run() -> None:
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()

    run.device_inputs = device_inputs  # keep the device buffers alive as long as the callable
    run.binding = binding
    return run
