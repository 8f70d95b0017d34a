"""Named variants a suite can list by name instead of spelling out precision and transforms."""

from __future__ import annotations

from ..config import TransformSpec, VariantSpec


def _v(name: str, backend: str | None = None, precision: str = "fp32", precision_mode: str = "cast",
       transforms: tuple = (), **backend_options) -> VariantSpec:
    return VariantSpec(name=name, backend=backend, precision=precision, precision_mode=precision_mode,
                       transforms=[TransformSpec(name=t, options=o) for t, o in transforms],
                       backend_options=backend_options)


PRESETS: dict[str, VariantSpec] = {v.name: v for v in [
    _v("fp32"),
    _v("bf16", precision="bf16"),
    _v("bf16-autocast", precision="bf16", precision_mode="autocast"),
    _v("fp16", precision="fp16"),
    _v("fp16-autocast", precision="fp16", precision_mode="autocast"),
    _v("tf32", backend="pytorch", transforms=(("tf32", {}),)),
    _v("torch-int8-dynamic", backend="pytorch", transforms=(("int8-dynamic", {}),)),
    _v("torch-int8-dynamic-float-down", backend="pytorch",
       transforms=(("int8-dynamic", {"skip_modules": ["down_proj"]}),)),
    _v("torch-int8-weight-only", backend="pytorch", transforms=(("int8-weight-only", {}),)),
    _v("torch-int4-weight-only", backend="pytorch", transforms=(("int4-weight-only", {}),)),
    _v("ort-fp32", backend="onnxruntime", graph_optimization_level="basic"),
    _v("ort-optimized", backend="onnxruntime", transforms=(("ort-optimize", {}),)),
    _v("ort-int8-dynamic", backend="onnxruntime", transforms=(("ort-optimize", {}), ("ort-int8-dynamic", {}))),
    _v("ort-int8-static", backend="onnxruntime", transforms=(("ort-optimize", {}), ("ort-int8-static", {}))),
    _v("ort-int4", backend="onnxruntime", transforms=(("ort-optimize", {}), ("ort-int4", {}))),
    _v("ort-fp16", backend="onnxruntime", transforms=(("ort-optimize", {}), ("ort-fp16", {}))),
    _v("pruned50-unstructured", transforms=(("prune-unstructured", {"sparsity": 0.5}),)),
    _v("pruned90-sparse-csr", backend="pytorch",
       transforms=(("prune-unstructured", {"sparsity": 0.9}), ("sparse-csr", {"min_sparsity": 0.85}))),
    # activation ranking on calibration text keeps far more quality than weight magnitude (SmolLM2 top-1
    # agreement 0.71 vs 0.008 at 50% FFN removed), so the presets use it
    _v("pruned-ffn50", transforms=(("prune-structured", {"ffn_fraction": 0.5, "method": "activation"}),)),
    _v("pruned-ffn50-magnitude", transforms=(("prune-structured", {"ffn_fraction": 0.5, "method": "magnitude"}),)),
    _v("pruned-ffn50-heads25", transforms=(("prune-structured", {"ffn_fraction": 0.5, "head_fraction": 0.25,
                                                                 "method": "activation"}),)),
    _v("pruned-ffn50-int8", backend="pytorch",
       transforms=(("prune-structured", {"ffn_fraction": 0.5, "method": "activation"}), ("int8-dynamic", {}))),
    # the same prune, then a short distillation from the fp32 original (cached: the int8 variant reuses it)
    _v("pruned-ffn50-recovered", transforms=(("prune-structured", {"ffn_fraction": 0.5, "method": "activation"}),
                                             ("recover-distill", {}))),
    _v("pruned-ffn50-recovered-int8", backend="pytorch",
       transforms=(("prune-structured", {"ffn_fraction": 0.5, "method": "activation"}), ("recover-distill", {}),
                   ("int8-dynamic", {}))),
    _v("sparse-2to4-fp16", backend="pytorch", precision="fp16", transforms=(("sparse-2to4", {}),)),
    # torch.compile (inductor, freezing on CPU): compile time is recorded apart from the measurement
    _v("compile", backend="torch-compile"),
    _v("compile-bf16", backend="torch-compile", precision="bf16"),
    _v("compile-int8", backend="torch-compile", transforms=(("int8-dynamic", {"api": "torchao"}),)),
    _v("compile-max-autotune-bf16", backend="torch-compile", precision="bf16", mode="max-autotune"),
    # OpenVINO: one fp32 IR (converted once); bf16 through the inference precision hint on it, not a torch cast
    _v("ov-fp32", backend="openvino"),
    _v("ov-bf16", backend="openvino", precision="bf16"),
    _v("ov-int8", backend="openvino", transforms=(("nncf-int8", {}),)),
]}


def resolve_variant(entry: str | VariantSpec) -> VariantSpec:
    """A preset name becomes its spec; an explicit spec is returned as is."""
    if isinstance(entry, VariantSpec):
        return entry
    try:
        return PRESETS[entry].model_copy(deep=True)
    except KeyError:
        raise KeyError(entry) from None
