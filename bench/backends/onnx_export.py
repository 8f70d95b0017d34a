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
from pathlib import Path
from typing import Any

import numpy as np

from ..cache import build_once, cache_key

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


def _export_torchscript(model, args, names, output_name, raw: Path, opset: int) -> None:
    import torch

    axes = {n: {0: "batch", 1: "seq"} for n in [*names, output_name]}
    torch.onnx.export(_wrapper(model, output_name, names), args, str(raw), input_names=names,
                      output_names=[output_name], opset_version=opset, dynamo=False, dynamic_axes=axes)


def _export_dynamo(model, args, names, output_name, raw: Path, opset: int) -> None:
    import torch

    batch, seq = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("seq", min=2, max=8192)
    program = torch.onnx.export(_wrapper(model, output_name, names), args, input_names=names,
                                output_names=[output_name], opset_version=max(opset, 18), dynamo=True,
                                dynamic_shapes={"args": tuple({0: batch, 1: seq} for _ in names)}, verbose=False)
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


def export_onnx(model: Any, example_inputs: dict, output_name: str, path: Path, opset: int = DEFAULT_OPSET,
                exporter: str = "auto") -> dict:
    """Export `model` to `path` (+ `path.name + '.data'`) with dynamic batch and sequence axes.

    The graph's inputs are the keys of `example_inputs` (in order) and its one output is `output_name`
    (`last_hidden_state` or `logits`; no KV cache). `exporter`: "torchscript" (eager attention, fusable by
    ORT's optimizer), "dynamo", or "auto" (torchscript, then dynamo if that fails or disagrees with torch).
    Returns what was done: exporter, attention implementation, opset, max |ORT - torch| on the example.
    """
    import warnings

    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(example_inputs)
    args = tuple(example_inputs[n] for n in names)
    order = {"auto": ["torchscript", "dynamo"], "torchscript": ["torchscript"], "dynamo": ["dynamo"]}[exporter]
    was_training = getattr(model, "training", False)
    model.eval()
    errors: dict[str, str] = {}
    try:
        ref = _torch_output(model, example_inputs, output_name)
        tolerance = 1e-3 * max(1.0, float(np.abs(ref).max()))
        for which in order:
            raw_dir = Path(tempfile.mkdtemp(prefix=".export-", dir=path.parent))
            try:
                raw = raw_dir / "model.onnx"
                with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad(), \
                        _attention(model, "eager" if which == "torchscript" else None) as attn:
                    warnings.simplefilter("ignore")
                    (_export_torchscript if which == "torchscript" else _export_dynamo)(
                        model, args, names, output_name, raw, opset)
                diff = _max_abs_diff(raw, example_inputs, ref)
                if not diff <= tolerance and which != order[-1]:
                    errors[which] = f"output differs from torch by {diff:.3g}"
                    continue
                _save_with_external_data(raw, path)
                return {"exporter": which, "attn_implementation": attn, "opset": max(opset, 18)
                        if which == "dynamo" else opset, "inputs": names, "output": output_name,
                        "max_abs_diff_vs_torch": diff, **({"fallback_from": errors} if errors else {})}
            except Exception as exc:  # noqa: BLE001 - try the next exporter, report all failures
                errors[which] = f"{type(exc).__name__}: {str(exc)[:500]}"
                if which == order[-1]:
                    raise RuntimeError(f"ONNX export failed: {errors}") from exc
            finally:
                shutil.rmtree(raw_dir, ignore_errors=True)
    finally:
        model.train(was_training)
    raise RuntimeError(f"ONNX export failed: {errors}")


def _save_with_external_data(src: Path, dst: Path) -> None:
    """Write `src` (with whatever external files it has) as `dst` + one `dst.name + '.data'` file."""
    import onnx

    model = onnx.load(str(src), load_external_data=True)
    onnx.save_model(model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=Path(dst).name + ".data", size_threshold=1024)


def cached_export(model: Any, example_inputs: dict, output_name: str, key_parts: dict, cache_dir: Path,
                  opset: int = DEFAULT_OPSET) -> tuple[Path, bool]:
    """Export once per (key_parts, opset); returns (path to model.onnx, cache_hit).

    The folder is named by sha256(JSON(key_parts + opset)); it holds model.onnx, model.onnx.data, key.json and
    export.json (what `export_onnx` returned). Shapes are dynamic, so one export serves every batch and length.
    """
    final = Path(cache_dir) / cache_key({**key_parts, "opset": opset})

    def build(folder: Path) -> None:
        info = export_onnx(model, example_inputs, output_name, folder / "model.onnx", opset)
        (folder / "key.json").write_text(json.dumps({**key_parts, "opset": opset}, indent=1, default=str))
        (folder / EXPORT_INFO).write_text(json.dumps(info, indent=1, default=str))

    return final / "model.onnx", build_once(final, build)


def export_info(path: Path) -> dict:
    """What `export_onnx` recorded for a model made by `cached_export` ({} if none)."""
    f = Path(path).parent / EXPORT_INFO
    return json.loads(f.read_text()) if f.exists() else {}


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
