"""OpenVINO backend: convert once (cached), then a model compiled for the OpenVINO device of the point's device.

Precision is OpenVINO's inference precision hint, taken from the variant's precision and always set (the CPU
plugin's default is bf16 where the CPU has it): `ov-bf16` compiles the fp32 IR with the bf16 hint, so the
torch model is not cast (the backend declares `precision_api`: fp32 weights, eligible ops in bf16, as OpenVINO
chooses them, and the record's precision says so). The precision stage has already refused a precision the device would emulate; should OpenVINO still
compile at another precision than the one asked, the point is `unsupported` with what it reported, since
the record would otherwise claim a precision that did not run. int8 comes from a graph transform (`nncf-int8`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ...errors import Unsupported
from ...records.schema import Threads
from .. import Backend, Session, backends
from . import require
from .convert import cached_ir, convert, ir_file_bytes, ir_lookup_table_bytes

OV_DEVICES = {"cpu": "CPU"}  # the harness's devices OpenVINO runs on, by OpenVINO's name (cuda is not one)
HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}  # precision -> INFERENCE_PRECISION_HINT
OUTPUTS = {"causal-lm": "logits", "encoder": "last_hidden_state"}  # the primary output, by task
RECORDED = ("INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS",
            "EXECUTION_DEVICES", "OPTIMAL_NUMBER_OF_INFER_REQUESTS", "ENABLE_CPU_PINNING")


class OvOptions(BaseModel):
    """`backend_options` of a variant that runs on OpenVINO."""

    model_config = ConfigDict(extra="forbid")
    performance_hint: Literal["LATENCY", "THROUGHPUT"] = Field(
        "LATENCY", description="THROUGHPUT splits the threads into streams for concurrent requests; a session "
                               "runs one request at a time")
    num_streams: int | None = Field(None, ge=1, description="null: the performance hint decides")


def ov_device(device: str) -> str:
    """OpenVINO's name for the harness's `device`, Unsupported where OpenVINO does not list it here."""
    ov = require("openvino")
    name = OV_DEVICES[device]  # the plan refuses devices not declared (`devices`)
    listed = ov.Core().available_devices
    if name not in listed:
        raise Unsupported(f"OpenVINO {ov.__version__} lists no {name} device here (it lists "
                          f"{', '.join(listed) or 'none'})")
    return name


class OvSession(Session):
    """One infer request on the compiled model, fed the prepared arrays without copying them. Shapes are
    dynamic, so partial batches run on the same request."""

    def __init__(self, compiled: Any, inputs: dict[str, np.ndarray]):
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self._names = {name for port in compiled.inputs for name in port.get_names()}
        self._inputs = self._feed(inputs)
        rows = len(next(iter(inputs.values())))
        self._rows = {n: self._feed({k: v[:n] for k, v in inputs.items()}) for n in range(1, rows + 1)}

    def _feed(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.ascontiguousarray(v) for k, v in inputs.items() if k in self._names}

    def run(self) -> None:
        self.request.infer(self._inputs, share_inputs=True, share_outputs=True)

    def run_rows(self, rows: int) -> None:
        self.request.infer(self._rows[rows], share_inputs=True, share_outputs=True)

    def infer(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        # shared like the timed inputs: a request whose input tensor wraps a smaller array cannot copy into it
        return np.array(self.request.infer(self._feed(inputs), share_inputs=True)[0], dtype=np.float32)

    def generate(self, new_tokens: int, on_token: Callable[[int], None], rows: int | None = None) -> None:
        raise Unsupported("generation on OpenVINO is not wired: the converted graph has no KV cache (a stateful "
                          "decoder export, as optimum-intel makes, is not built here), and generating on it would "
                          "recompute the whole prefix every token")


def _plain(value: Any) -> Any:
    """A compiled model's property as JSON: an element type by its short name (f32, bf16), enums as text."""
    if hasattr(value, "get_type_name"):
        return value.get_type_name()
    return value if isinstance(value, (bool, int, float, str, list)) else str(value)


def _precision(reported: Any) -> str:
    """The harness's name for an INFERENCE_PRECISION_HINT OpenVINO reports."""
    name = _plain(reported)
    return {hint: precision for precision, hint in HINTS.items()}.get(name, name)


@backends.register("openvino")
class OpenVino(Backend):
    stages = frozenset({"torch", "openvino"})
    precisions = frozenset({"fp32", "bf16"})  # through the inference precision hint; int8 from `nncf-int8`
    precision_api = "INFERENCE_PRECISION_HINT"
    devices = frozenset(OV_DEVICES)
    libraries = ("openvino", "nncf")
    Options = OvOptions

    def export(self, model, loaded, inputs, ctx) -> Path:
        """The IR of the model as the torch stages left it, converted once per model identity, torch transforms,
        the dtype the torch model holds (ov-fp32, ov-bf16 and ov-int8 share one fp32 IR), task and OpenVINO
        version."""
        ov = require("openvino")
        ov_device(ctx.device)  # before converting anything
        dtypes = sorted({str(p.dtype) for p in model.parameters()})
        key = {**{k: v for k, v in ctx.model_key.items() if k != "precision"}, "dtypes": dtypes,
               "task": loaded.task, "openvino": ov.__version__}
        output = OUTPUTS[loaded.task]
        path, info = cached_ir(key, ctx.cache_dir / "openvino",
                               lambda xml: convert(model, inputs, output, xml))
        ctx.export_info = {**info, "path": str(path)}
        return path

    def open(self, artifact, loaded, inputs, ctx) -> OvSession:
        ov = require("openvino")
        opts = OvOptions.model_validate(ctx.backend_options)
        device = ov_device(ctx.device)
        config = {"INFERENCE_PRECISION_HINT": HINTS[ctx.precision], "PERFORMANCE_HINT": opts.performance_hint,
                  "INFERENCE_NUM_THREADS": ctx.intra_op_threads}
        if opts.num_streams is not None:
            config["NUM_STREAMS"] = opts.num_streams
        core = ov.Core()
        start = time.perf_counter()
        compiled = core.compile_model(core.read_model(str(artifact)), device, config)
        compile_s = time.perf_counter() - start
        properties = {name: _plain(compiled.get_property(name)) for name in RECORDED}
        ran = _precision(compiled.get_property("INFERENCE_PRECISION_HINT"))
        if ran != ctx.precision:
            raise Unsupported(f"OpenVINO {ov.__version__} compiled the model at {ran} on {device} though "
                              f"{ctx.precision} was asked (INFERENCE_PRECISION_HINT {HINTS[ctx.precision]})")
        session = OvSession(compiled, inputs)
        session.description = self.describe(
            ctx, engine="openvino", engine_version=ov.__version__, precision_mode="engine",
            file=str(artifact), file_bytes=ir_file_bytes(artifact), lookup_table_bytes=ir_lookup_table_bytes(artifact),
            # one infer request at a time: its nodes run in order, each on the request's threads
            threads=Threads(intra_op=int(compiled.get_property("INFERENCE_NUM_THREADS")), inter_op=1),
            properties={"compiled": properties, "device": device, "compile_s": round(compile_s, 3),
                        "conversion": ctx.export_info})
        return session
