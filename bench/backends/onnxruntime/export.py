"""ONNX export for the ONNX Runtime backend: a torch model becomes `model.onnx` (+ one external-data file),
exported once per model identity and opset, and reused by every batch size and length.

Findings with torch 2.13 / transformers 5.23 / onnxruntime 1.32 (tiny BERT, GPT-2, Llama; all-MiniLM-L6-v2):

* Exporter. Both exporters give correct graphs with dynamic batch and sequence axes (outputs match torch at
  other shapes and with padding). Only the TorchScript exporter (``dynamo=False``), fed a model switched to
  *eager* attention, gives a BERT graph that ORT's transformer optimizer fuses fully (EmbedLayerNormalization,
  Attention, SkipLayerNormalization, BiasGelu): the dynamo exporter's graphs (and sdpa attention in either
  exporter) get only the LayerNorm/Gelu fusions, and ORT's gpt2 optimizer crashes on dynamo GPT-2 graphs
  (IndexError in Gpt2OnnxModel.postprocess). So `export_onnx` uses TorchScript + eager attention and falls
  back to dynamo when that export fails or its output disagrees with torch; the choice is recorded.
  Pitfall: the TorchScript exporter restores the *wrapper's* training flag recursively after export, so a
  wrapper left in train mode silently puts the model into train mode (dropout on) - wrappers here are eval().
* Files. Every model is written as ``model.onnx`` plus one external-data file beside it, which also lifts
  protobuf's 2 GB limit; the TorchScript exporter itself switches to per-tensor external files above 2 GB,
  and `export_onnx` gathers those into the one data file.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...cache import build_artifact, cache_key

DEFAULT_OPSET = 18
EXPORT_INFO = "export.json"  # written by cached_export beside the model


def _wrapper(model: Any, output_name: str, input_names: list[str]):
    """A module taking the inputs positionally (in `input_names` order) and returning one tensor."""
    import torch

    class Primary(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *args):
            kwargs = dict(zip(input_names, args))
            if output_name == "logits":
                kwargs["use_cache"] = False
            return getattr(self.model(**kwargs), output_name)

    return Primary().eval()


@contextlib.contextmanager
def evaluating(model: Any):
    """Eval mode for the duration, then the model's own training flag again."""
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextlib.contextmanager
def _attention(model: Any, implementation: str | None):
    """Temporarily switch a transformers model's attention implementation (eager exports as plain ops)."""
    config = getattr(model, "config", None)
    before = getattr(config, "_attn_implementation", None)
    switched = False
    if implementation and before and before != implementation and hasattr(model, "set_attn_implementation"):
        try:
            model.set_attn_implementation(implementation)
            switched = True
        except Exception:  # noqa: BLE001 - a model that cannot switch is exported as it is
            pass
    try:
        yield getattr(config, "_attn_implementation", None)
    finally:
        if switched:
            model.set_attn_implementation(before)


@dataclass
class GraphSpec:
    """One graph to export: `module` takes `args` positionally; `axes` names each input's and output's dynamic
    axes (one name is one dimension across tensors) and `bounds` gives the dynamo exporter each name's range."""

    module: Any
    args: tuple
    input_names: list[str]
    output_names: list[str]
    axes: dict[str, dict[int, str]]
    bounds: dict[str, tuple[int, int]]


def _export_torchscript(spec: GraphSpec, raw: Path, opset: int) -> None:
    import torch

    torch.onnx.export(spec.module, spec.args, str(raw), input_names=spec.input_names,
                      output_names=spec.output_names, opset_version=opset, dynamo=False, dynamic_axes=spec.axes)


def _export_dynamo(spec: GraphSpec, raw: Path, opset: int) -> None:
    import torch

    dims = {name: torch.export.Dim(name, min=low, max=high) for name, (low, high) in spec.bounds.items()}
    shapes = tuple({axis: dims[name] for axis, name in spec.axes.get(n, {}).items()} for n in spec.input_names)
    program = torch.onnx.export(spec.module, spec.args, input_names=spec.input_names,
                                output_names=spec.output_names, opset_version=max(opset, 18), dynamo=True,
                                dynamic_shapes={"args": shapes}, verbose=False)
    program.save(str(raw), external_data=True)


def _torch_output(model, example_inputs: dict, output_name: str) -> np.ndarray:
    import torch

    extra = {"use_cache": False} if output_name == "logits" else {}
    with torch.no_grad():
        return getattr(model(**example_inputs, **extra), output_name).float().cpu().numpy()


def _max_abs_diff(path: Path, example_inputs: dict, ref: np.ndarray) -> float:
    """ORT vs torch on the example inputs: a cheap guard against a silently wrong export."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed_names = {i.name for i in session.get_inputs()}
    got = session.run(None, {k: v.detach().cpu().numpy() for k, v in example_inputs.items() if k in feed_names})[0]
    return float(np.abs(got - ref).max()) if got.shape == ref.shape else float("inf")


def export_graph(model: Any, spec: GraphSpec, path: Path, opset: int, check: Callable[[Path], tuple[bool, dict]],
                 exporter: str = "auto") -> dict:
    """Export `spec` to `path` (+ `path.name + '.data'`) with the first exporter whose graph passes `check`.

    `exporter`: "torchscript" (eager attention, fusable by ORT's optimizer), "dynamo", or "auto" (torchscript,
    then dynamo if that fails or `check` finds it disagrees with torch; the last one is kept either way, with
    what `check` found). `check(raw_path) -> (agrees, findings)` runs with the model's own attention restored.
    Returns the exporter, attention implementation, opset and the findings.
    """
    import warnings

    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    order = {"auto": ["torchscript", "dynamo"], "torchscript": ["torchscript"], "dynamo": ["dynamo"]}[exporter]
    errors: dict[str, str] = {}
    with evaluating(model):
        for which in order:
            raw_dir = Path(tempfile.mkdtemp(prefix=".export-", dir=path.parent))
            try:
                raw = raw_dir / "model.onnx"
                with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad(), \
                        _attention(model, "eager" if which == "torchscript" else None) as attn:
                    warnings.simplefilter("ignore")
                    (_export_torchscript if which == "torchscript" else _export_dynamo)(spec, raw, opset)
                agrees, findings = check(raw)
                if not agrees and which != order[-1]:
                    errors[which] = f"output differs from torch: {json.dumps(findings, default=str)}"
                    continue
                _save_with_external_data(raw, path)
                return {"exporter": which, "attn_implementation": attn,
                        "opset": max(opset, 18) if which == "dynamo" else opset, **findings,
                        **({"fallback_from": errors} if errors else {})}
            except Exception as exc:  # noqa: BLE001 - try the next exporter, report all failures
                errors[which] = f"{type(exc).__name__}: {str(exc)[:500]}"
                if which == order[-1]:
                    raise RuntimeError(f"ONNX export failed: {errors}") from exc
            finally:
                shutil.rmtree(raw_dir, ignore_errors=True)
    raise RuntimeError(f"ONNX export failed: {errors}")


def export_onnx(model: Any, example_inputs: dict, output_name: str, path: Path, opset: int = DEFAULT_OPSET,
                exporter: str = "auto") -> dict:
    """Export `model` to `path` (+ `path.name + '.data'`) with dynamic batch and sequence axes.

    The graph's inputs are the keys of `example_inputs` (in order) and its one output is `output_name`
    (`last_hidden_state` or `logits`; no KV cache: decoders with one are exported by `ort_decoder`).
    `exporter` as in `export_graph`. Returns what was done: exporter, attention implementation, opset,
    max |ORT - torch| on the example.
    """
    names = list(example_inputs)
    spec = GraphSpec(module=_wrapper(model, output_name, names), args=tuple(example_inputs[n] for n in names),
                     input_names=names, output_names=[output_name],
                     axes={n: {0: "batch", 1: "seq"} for n in [*names, output_name]},
                     bounds={"batch": (1, 4096), "seq": (2, 8192)})
    with evaluating(model):
        ref = _torch_output(model, example_inputs, output_name)
        tolerance = 1e-3 * max(1.0, float(np.abs(ref).max()))

        def check(raw: Path) -> tuple[bool, dict]:
            diff = _max_abs_diff(raw, example_inputs, ref)
            return diff <= tolerance, {"max_abs_diff_vs_torch": diff}

        info = export_graph(model, spec, path, opset, check, exporter)
    return {**info, "inputs": names, "output": output_name}


def _save_with_external_data(src: Path, dst: Path) -> None:
    """Write `src` (with whatever external files it has) as `dst` + one `dst.name + '.data'` file."""
    import onnx

    model = onnx.load(str(src), load_external_data=True)
    onnx.save_model(model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=Path(dst).name + ".data", size_threshold=1024)


def cached_export(model: Any, example_inputs: dict, output_name: str, key_parts: dict, cache_dir: Path,
                  opset: int = DEFAULT_OPSET) -> tuple[Path, bool]:
    """`export_onnx` once per (key_parts, opset); returns (path to model.onnx, cache_hit)."""
    return cached_graph(key_parts, cache_dir, opset,
                        lambda path: export_onnx(model, example_inputs, output_name, path, opset))


def cached_graph(key_parts: dict, cache_dir: Path, opset: int, export: Callable[[Path], dict]) -> tuple[Path, bool]:
    """Run `export(path) -> info` once per (key_parts, opset); returns (path to model.onnx, cache_hit).

    The folder is named by sha256(JSON(key_parts + opset)); it holds model.onnx, model.onnx.data, key.json and
    export.json (what `export` returned). Shapes are dynamic, so one export serves every batch and length.
    """
    key = {**key_parts, "opset": opset}
    path, info = build_artifact(Path(cache_dir) / cache_key(key), "model.onnx", export, key=key, info_name=EXPORT_INFO)
    return path, info["cache_hit"]


def export_info(path: Path) -> dict:
    """What the export recorded for a model made by `cached_graph` ({} if none)."""
    f = Path(path).parent / EXPORT_INFO
    return json.loads(f.read_text()) if f.exists() else {}


# (operator, input slot) pairs that read rows of a table by index: Gather's data, and the word, position and
# segment tables of ORT's fused EmbedLayerNormalization
LOOKUP_SLOTS = frozenset({("Gather", 0), ("EmbedLayerNormalization", 2), ("EmbedLayerNormalization", 3),
                          ("EmbedLayerNormalization", 4)})


def onnx_lookup_table_bytes(path: Path) -> int:
    """Bytes of initializers that are only indexed into (embedding tables, LOOKUP_SLOTS): a query reads a few
    rows of them, so the weights a query streams are the file's bytes less these. An exported decoder often
    holds the token table twice, once gathered and once transposed for the LM head; only the gathered copy is
    left out."""
    import numpy as np
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {t.name: t for t in graph.initializer}
    uses: dict[str, set] = {}
    for node in graph.node:
        for slot, name in enumerate(node.input):
            if name in initializers:
                uses.setdefault(name, set()).add((node.op_type, slot))
    return sum(int(np.prod(t.dims)) * tensor_dtype_to_np_dtype(t.data_type).itemsize
               for name, t in initializers.items() if name in uses and uses[name] <= LOOKUP_SLOTS)


def onnx_file_bytes(path: Path) -> int:
    """Bytes of the model file plus every external-data file its tensors point to."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors

    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    locations = {entry.value for t in _get_all_tensors(model)
                 if t.data_location == onnx.TensorProto.EXTERNAL
                 for entry in t.external_data if entry.key == "location"}
    return path.stat().st_size + sum((path.parent / loc).stat().st_size for loc in locations)
