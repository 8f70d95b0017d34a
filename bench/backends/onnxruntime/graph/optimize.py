"""ORT's transformer optimizer (attention, layer-norm and GELU fusions) on an exported graph.

Optimizer model types: each architecture's is its family's (bench/models/families.py). ORT 1.32's
optimize_model knows bert, gpt2, phi, qwen3, t5, ... but not llama; Llama-class graphs go through the gpt2
optimizer, which fuses only RMSNorm (SimplifiedLayerNormalization / SkipSimplifiedLayerNormalization). ORT's
attention fusion for Llama lives in its own exporter (onnxruntime.transformers.models.llama, KV cache +
GroupQueryAttention), which this harness does not use. GPT-2 graphs from transformers 5 get
SkipLayerNormalization and FastGelu but no Attention fusion.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ....models.families import family_of
from .inspect import compare_graphs, op_counts


def ort_model_type(model_type: str) -> tuple[str, str | None]:
    """optimize_model's model_type for a transformers config.model_type (its family's), and a note when it is a
    stand-in or leaves fusions out."""
    family = family_of(model_type)
    note = family.ort_note and f"ORT {_ort_version()}, {family.name} family: {family.ort_note}"
    return family.ort_model_type, note


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def optimize_transformer(path_in: Path, path_out: Path, model_type: str, num_heads: int, hidden_size: int,
                         opt_level: int = 1, verify: bool = True) -> dict:
    """ORT's transformer optimizer (fusions); returns the fused operators that appeared, or why none did.

    `fused_ops` counts op types in the output graph that are in the com.microsoft domain or absent from the
    input graph, keyed by domain-qualified name ("com.microsoft.Attention"; standard ops unqualified). BERT
    attention keeps the raw 2-D mask (correct for left or right padding; ORT's default, a mask index, assumes
    right padding). A fusion that raises keeps the unfused graph and records the error. With `verify`, both
    graphs run on a small synthetic feed and `max_abs_diff_vs_unfused` is recorded (not enforced).
    """
    import onnx
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    before = op_counts(onnx.load(str(path_in), load_external_data=False))
    ort_type, note = ort_model_type(model_type)
    info: dict[str, Any] = {"optimizer": "onnxruntime.transformers.optimizer.optimize_model", "model_type": model_type,
                            "ort_model_type": ort_type, "num_heads": num_heads, "hidden_size": hidden_size,
                            "opt_level": opt_level, **({"note": note} if note else {})}
    options = FusionOptions(ort_type)
    if ort_type == "bert":
        options.use_raw_attention_mask(True)
    try:
        import logging

        logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
        optimized = optimize_model(str(path_in), model_type=ort_type, num_heads=num_heads, hidden_size=hidden_size,
                                   opt_level=opt_level, optimization_options=options)
        after = op_counts(optimized.model)
        info["fusion_statistics"] = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
        optimized.save_model_to_file(str(path_out), use_external_data_format=True)
    except Exception as exc:  # noqa: BLE001 - keep the unfused graph and say why
        info["fusion_error"] = f"{type(exc).__name__}: {exc}"
        after = before
        _copy_model(path_in, path_out)
    info["fused_ops"] = {op: n for op, n in sorted(after.items())
                         if op.startswith("com.microsoft.") or op not in before}
    info["nodes_before"], info["nodes_after"] = sum(before.values()), sum(after.values())
    if verify and "fusion_error" not in info:
        info["max_abs_diff_vs_unfused"] = compare_graphs(path_in, path_out)
    return info


def _copy_model(src: Path, dst: Path) -> None:
    import onnx

    onnx.save_model(onnx.load(str(src)), str(dst), save_as_external_data=True, location=Path(dst).name + ".data")
