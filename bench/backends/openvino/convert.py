"""A torch model becomes OpenVINO IR (`model.xml` + `model.bin`) once per cache key, with dynamic batch and
sequence axes, so one conversion serves every batch size, length and precision hint.

Findings with openvino 2026.4 / torch 2.13 / transformers 5.x (tiny BERT and GPT-2, all-MiniLM-L6-v2):

* `ov.save_model` compresses weights to fp16 by default (`compress_to_fp16=True`): an "fp32" IR saved so
  holds fp16 weights. Saved here with it off, so the IR holds what the torch model held.
* A bf16-cast torch model converts to a graph with bf16 outputs, which OpenVINO's Python API hands back as
  float16 arrays (the bits reinterpreted: the values are wrong). Every output is made f32 in the graph, so the
  primary output is read as float32 whatever the IR computes in.
* The CPU plugin's default inference precision is bf16 on a CPU with native bf16: the session always sets
  `INFERENCE_PRECISION_HINT` (see backend.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...cache import build_artifact, cache_key

INFO = "info.json"  # what the conversion (or a transform) recorded, beside its IR
DECOMPRESSION = frozenset({"Convert", "Subtract", "Multiply", "Reshape"})  # between a compressed table and its use


def _primary(model: Any, output: str):
    """A module taking input_ids and attention_mask and returning the one output the sessions read. Its own
    training flag is off without switching the model's (`eval()` would, recursively)."""
    import torch

    class Primary(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            extra = {"use_cache": False} if output == "logits" else {}
            return getattr(self.model(input_ids=input_ids, attention_mask=attention_mask, **extra), output)

    module = Primary()
    module.training = False
    return module


def _float32_outputs(ov_model: Any) -> Any:
    """The model with every output converted to f32 inside the graph (see the module's findings)."""
    import openvino as ov
    from openvino.preprocess import PrePostProcessor

    narrow = [i for i, out in enumerate(ov_model.outputs) if out.get_element_type() != ov.Type.f32]
    if not narrow:
        return ov_model
    ppp = PrePostProcessor(ov_model)
    for i in narrow:
        ppp.output(i).tensor().set_element_type(ov.Type.f32)
    return ppp.build()


def convert(model: Any, example: dict[str, np.ndarray], output: str, xml: Path) -> dict:
    """Convert `model` (in eval mode) to `xml` (+ `.bin`); returns the seconds it took and |OpenVINO - torch|
    on `example`, compiled at f32 on the CPU: a cheap guard against a silently wrong conversion."""
    import openvino as ov
    import torch

    if model.training:
        raise ValueError("convert a model in eval mode: a training-mode model would be traced with dropout")
    tensors = {k: torch.from_numpy(example[k]) for k in ("input_ids", "attention_mask")}
    module = _primary(model, output)
    start = time.perf_counter()
    with torch.no_grad():
        ov_model = ov.convert_model(module, example_input=tensors)
    ov_model = _float32_outputs(ov_model)
    ov_model.outputs[0].get_tensor().set_names({output})
    ov.save_model(ov_model, str(xml), compress_to_fp16=False)
    convert_s = time.perf_counter() - start
    with torch.no_grad():
        ref = module(**tensors).float().numpy()
    got = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(example)[0]
    return {"convert_s": round(convert_s, 3), "api": "openvino.convert_model(torch.nn.Module, example_input)",
            "output": output, "max_abs_diff_vs_torch": float(np.abs(got - ref).max())}


def cached_ir(key: dict, folder: Path, build: Callable[[Path], dict]) -> tuple[Path, dict]:
    """`build(xml) -> info` once per key, in `folder`/<hash of key>; returns (the IR's model.xml, its info with
    `cache_hit`). A hit reads the info the build wrote, so its `convert_s` says what the conversion cost then."""
    return build_artifact(Path(folder) / cache_key(key), "model.xml", build, key=key)


def ir_file_bytes(xml: Path) -> int:
    """Bytes of the IR on disk: the graph (`.xml`) and its weights (`.bin`)."""
    xml = Path(xml)
    return xml.stat().st_size + xml.with_suffix(".bin").stat().st_size


def _uses(node: Any) -> set[tuple[str, int]]:
    """(operator, input port) of every use of `node`'s outputs, looking through weight decompression (a
    compressed table is Constant -> Convert -> Subtract -> Multiply before its Gather)."""
    uses = set()
    for out in node.outputs():
        for target in out.get_target_inputs():
            user = target.get_node()
            if user.get_type_name() in DECOMPRESSION:
                uses |= _uses(user)
            else:
                uses.add((user.get_type_name(), target.get_index()))
    return uses


def ir_lookup_table_bytes(xml: Path) -> int:
    """Bytes of the constants that are only indexed into (embedding tables: a Gather's data, port 0), with
    their decompression scales: a query reads a few rows of them, so the weights a query streams are the IR's
    bytes less these. A token table a decoder shares with its LM head is streamed by the head and so kept."""
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    return sum(op.get_byte_size() for op in model.get_ordered_ops()
               if op.get_type_name() == "Constant" and _uses(op) == {("Gather", 0)})
