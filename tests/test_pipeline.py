"""The one transform pipeline: stage order, what transforms declare, and what backends get."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.context import RunContext
from bench.variants.presets import resolve_variant


def tiny_bert():
    from transformers import BertConfig, BertModel

    return BertModel(BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                                vocab_size=100)).eval()


class Loaded:
    def __init__(self, model):
        self.model, self.task, self.tokenizer = model, "encoder", None

    @property
    def config(self):
        return self.model.config


def context(precision: str, flags: frozenset[str], tmp_path: Path) -> RunContext:
    return RunContext(device="cpu", task="encoder", batch_size=2, seq_len=8, seed=0, intra_op_threads=1,
                      inter_op_threads=1, cpu_flags=flags, cache_dir=tmp_path, precision=precision)


def test_sparse_2to4_runs_after_the_precision_stage(monkeypatch, tmp_path):
    """Defect: torch-stage transforms ran before the precision cast, so `sparse-2to4` always saw fp32 and the
    `sparse-2to4-fp16` preset refused itself ("combine with precision fp16"). It must see the fp16 model."""
    import torch

    from bench.backends import backends
    from bench.variants import sparse_2to4
    from bench.variants.pipeline import prepare

    seen = {}

    def record_dtype(model, device, *a, **k):
        seen["dtype"] = next(model.parameters()).dtype
        return model, {"layers": {}}

    monkeypatch.setattr(sparse_2to4, "semi_structured_2to4", record_dtype)
    variant = resolve_variant("sparse-2to4-fp16")
    inputs = {"input_ids": np.ones((2, 8), np.int64), "attention_mask": np.ones((2, 8), np.int64)}
    # amx_fp16 lets the precision stage accept fp16 on this CPU; the point is the order, not the kernel
    ctx = context("fp16", frozenset({"amx_fp16"}), tmp_path)
    prepared = prepare(Loaded(tiny_bert()), variant, backends.get("pytorch")(), inputs, ctx)
    assert seen["dtype"] == torch.float16
    assert [t.name for t in prepared.applied] == ["sparse-2to4"]
    assert prepared.compute_precision("fp16") == "fp16"


def test_pipeline_records_what_each_transform_declares(tmp_path):
    from bench.backends import backends
    from bench.variants.pipeline import prepare

    variant = resolve_variant("pruned-ffn50-int8")
    variant.transforms[0].options["method"] = "magnitude"
    inputs = {"input_ids": np.ones((2, 8), np.int64), "attention_mask": np.ones((2, 8), np.int64)}
    prepared = prepare(Loaded(tiny_bert()), variant, backends.get("pytorch")(), inputs,
                       context("fp32", frozenset(), tmp_path))
    prune, int8 = prepared.applied
    assert (prune.kind, int8.kind) == ("pruning", "quantization")
    assert "50% FFN" in prune.description and int8.description.startswith("int8 dynamic")
    assert prepared.compute_precision("fp32") == "int8"
    assert 0 < prepared.flop_scale("matmul") < 1 and prepared.flop_scale("attention") == 1.0
    assert prepared.session.describe().precision == "fp32"


class FakeOrtSession:
    """Stands in for an onnxruntime.InferenceSession on a machine without CUDA: records how it is run."""

    def __init__(self):
        self.calls = []

    def get_inputs(self):
        class Input:
            def __init__(self, name):
                self.name = name

        return [Input("input_ids"), Input("attention_mask")]

    def get_outputs(self):
        class Output:
            name = "last_hidden_state"

        return [Output()]

    def io_binding(self):
        session = self

        class Binding:
            def __init__(self):
                self.rows = None

            def bind_ortvalue_input(self, name, value):
                self.rows = len(value)

            def bind_output(self, *a):
                pass

            def synchronize_outputs(self):
                session.calls.append(("synchronize", self.rows))

        return Binding()

    def run_with_iobinding(self, binding):
        self.calls.append(("bound", binding.rows))

    def run(self, *a, **k):
        self.calls.append(("host copy", None))


def test_ort_cuda_partial_batches_use_io_binding(monkeypatch):
    """Defect: the server scenario's `run_rows` called session.run with host arrays on CUDA, so it timed host
    copies that `run()` avoids. Every partial batch must run bound, with its inputs already on the device."""
    import onnxruntime

    from bench.backends.onnxruntime.backend import OrtSession

    monkeypatch.setattr(onnxruntime.OrtValue, "ortvalue_from_numpy", staticmethod(lambda array, *a: array))
    fake = FakeOrtSession()
    inputs = {"input_ids": np.ones((4, 8), np.int64), "attention_mask": np.ones((4, 8), np.int64)}
    session = OrtSession(fake, inputs, "cuda")
    session.run_rows(3)
    session.run_rows(1)
    session.run()
    assert fake.calls == [("bound", 3), ("synchronize", 3), ("bound", 1), ("synchronize", 1),
                          ("bound", 4), ("synchronize", 4)]
