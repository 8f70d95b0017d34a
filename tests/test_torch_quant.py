"""bench.variants.torch_quant on tiny random GPT-2 and BERT models: each transform runs and stays close to fp32.

Random weights: the bounds are loose and describe numerical drift, not model quality.
"""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest

from bench.errors import Unsupported
from bench.hardware.machine import cpu_flags
from bench.quality import metrics

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from bench.measurement import size  # noqa: E402
from bench.variants import precision  # noqa: E402
from bench.variants import torch_quant as tq  # noqa: E402

FLAGS = cpu_flags()
NO_FAST_FLAGS = frozenset({"avx2", "fma"})  # a CPU without VNNI, bf16 or AMX


@pytest.fixture(scope="module")
def gpt2():
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2)).eval()


@pytest.fixture(scope="module")
def bert():
    torch.manual_seed(0)
    return transformers.BertModel(transformers.BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=2,
                                                          intermediate_size=128)).eval()


@pytest.fixture(scope="module")
def ids():
    torch.manual_seed(1)
    return torch.randint(0, 1000, (2, 16))


def run(model, ids, ctx=None):
    with torch.inference_mode(), (ctx() if ctx else torch.autocast("cpu", enabled=False)):
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
    return (out.logits if hasattr(out, "logits") else out.last_hidden_state).float().numpy()


def assert_close_to_fp32(kind, ref, out, ids):
    assert out.shape == ref.shape and np.isfinite(out).all()
    if kind == "gpt2":
        assert metrics.mean_kl_divergence(ref, out) < 0.05
        assert metrics.top1_agreement(ref, out) > 0.8
    else:
        mask = np.ones(ids.shape)
        assert metrics.embedding_quality(ref, out, mask)["cosine_min"] > 0.98


TRANSFORMS = {
    "dynamic-int8": lambda m: tq.dynamic_int8(m),
    "dynamic-int8-x86-7bit": lambda m: tq.dynamic_int8(m, engine="x86", full_range=False),
    "dynamic-int8-torchao": lambda m: tq.dynamic_int8(m, api="torchao"),
    "weight-only-int8": lambda m: tq.weight_only_int8(m),
    "weight-only-int8-bf16": lambda m: tq.weight_only_int8(m, compute_dtype="bf16"),
    "int4-g32": lambda m: tq.weight_only_int4(m, group_size=32),
    "int4-g64": lambda m: tq.weight_only_int4(m, group_size=64),
    "int4-g32-hqq": lambda m: tq.weight_only_int4(m, group_size=32, algorithm="hqq"),
}


@pytest.mark.parametrize("kind", ["gpt2", "bert"])
@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_transform_runs_close_to_fp32_and_keeps_lm_head_float(kind, name, request, ids):
    model = request.getfixturevalue(kind)
    ref = run(model, ids)
    try:
        quantized, info = TRANSFORMS[name](copy.deepcopy(model))
    except Unsupported as exc:  # only where this CPU lacks the instructions the kernel needs
        assert ("bf16" in name or "int4" in name) and "bf16" in str(exc)
        pytest.skip(str(exc))
    assert_close_to_fp32(kind, ref, run(quantized, ids), ids)
    assert info["quantized_layers"] > 0 and info["api"] and info["scheme"]
    if kind == "gpt2":
        assert info["kept_float"][0] == "lm_head" and info["conv1d_converted"] == 8
        head = quantized.lm_head
        assert type(head) is torch.nn.Linear and type(head.weight) is torch.nn.Parameter
        assert head.weight.dtype in (torch.float32, torch.bfloat16)  # bf16 only where the whole model is cast
    if "int8" in name:
        assert size.weight_bytes(quantized) < size.weight_bytes(model)
    assert size.weight_bytes(quantized) <= size.serialized_bytes(quantized)


def test_skip_lm_head_false_quantizes_it(gpt2):
    model, info = tq.dynamic_int8(copy.deepcopy(gpt2), skip_lm_head=False)
    assert "lm_head" in info["quantized"] and type(model.lm_head) is not torch.nn.Linear


def test_dynamic_int8_settings_follow_cpu_flags(bert):
    engine_before = torch.backends.quantized.engine
    _, slow = tq.dynamic_int8(copy.deepcopy(bert), cpu_flags=NO_FAST_FLAGS)
    assert slow["engine"] == "x86" and slow["activation_reduce_range"] is True
    _, fast = tq.dynamic_int8(copy.deepcopy(bert), cpu_flags={"avx512_vnni", "amx_int8"})
    assert fast["activation_reduce_range"] is False
    assert fast["engine"] == ("onednn" if "onednn" in torch.backends.quantized.supported_engines else "x86")
    assert torch.backends.quantized.engine == engine_before  # the global engine is restored


@pytest.mark.parametrize("make", [
    lambda lin: tq.dynamic_int8(lin, cpu_flags=NO_FAST_FLAGS)[0],
    lambda lin: tq.dynamic_int8(lin, api="torchao")[0],
    lambda lin: tq.weight_only_int8(lin)[0],
])
def test_weight_bytes_sees_int8_storage(make):
    torch.manual_seed(0)
    fp32 = torch.nn.Sequential(torch.nn.Linear(256, 256))
    assert size.weight_bytes(fp32) == 256 * 256 * 4 + 256 * 4
    quantized = make(copy.deepcopy(fp32))
    # int8 weight (64 KiB) + fp32 bias + per-channel scales/zero points: well under a third of fp32
    assert 256 * 256 <= size.weight_bytes(quantized) < 0.35 * size.weight_bytes(fp32)


@pytest.mark.parametrize("rows", [1, tq.DECODE_ROWS, 64])  # aten int8pack kernel, then converted-weight GEMM
def test_int8_weight_only_bf16_paths_match_fp32(rows):
    torch.manual_seed(0)
    fp32 = torch.nn.Sequential(torch.nn.Linear(64, 128))
    x = torch.randn(rows, 64)
    try:
        quantized, info = tq.weight_only_int8(copy.deepcopy(fp32), compute_dtype="bf16")
    except Unsupported as exc:
        pytest.skip(str(exc))
    with torch.inference_mode():
        ref, out = fp32(x), quantized(x)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert float((out - ref).norm() / ref.norm()) < 0.02
    assert size.weight_bytes(quantized) < 0.4 * size.weight_bytes(fp32)


def test_weight_bytes_counts_tied_weights_once(gpt2):
    assert gpt2.lm_head.weight is gpt2.transformer.wte.weight
    unique = sum(p.numel() * p.element_size() for p in gpt2.parameters())  # parameters() dedupes ties
    unique += sum(b.numel() * b.element_size() for b in gpt2.buffers())
    assert size.weight_bytes(gpt2) == unique


def test_int4_runs_or_is_unsupported_with_reason(gpt2, ids):
    try:
        model, info = tq.weight_only_int4(copy.deepcopy(gpt2), group_size=32)
    except Unsupported as exc:
        assert "int4" in str(exc)
        return
    assert info["group_size"] == 32 and info["kernel"]
    assert size.weight_bytes(model) < size.weight_bytes(gpt2)
    with pytest.raises(Unsupported, match="bf16"):
        tq.weight_only_int4(copy.deepcopy(gpt2), group_size=32, cpu_flags=NO_FAST_FLAGS)


def test_int4_layers_that_do_not_fit_the_kernel_stay_float(bert):
    try:  # hidden 64: only the FFN output (in_features 128) fits group size 128
        _, info = tq.weight_only_int4(copy.deepcopy(bert), group_size=128)
    except Unsupported as exc:
        assert "bf16" in str(exc) or "int4" in str(exc)
        return
    assert info["quantized_layers"] == 2 and all(n.endswith("output.dense") for n in info["quantized"])
    assert all("group size 128" in r for r in info["kept_float_reasons"].values())
    with pytest.raises(ValueError):
        tq.weight_only_int4(copy.deepcopy(bert), group_size=48)


def test_int4_with_no_fitting_layer_is_unsupported():
    tiny = torch.nn.Sequential(torch.nn.Linear(16, 24))  # in_features below every group size
    with pytest.raises(Unsupported, match="int4"):
        tq.weight_only_int4(tiny, group_size=32, cpu_flags={"avx512_bf16"})


def test_precision_cast_and_autocast(bert, ids):
    ref = run(bert, ids)
    bf16 = {"avx512_bf16"}
    model, info = precision.cast_precision(copy.deepcopy(bert), "bf16", "cpu", cpu_flags=bf16)
    assert next(model.parameters()).dtype == torch.bfloat16 and info["precision_mode"] == "cast"
    assert metrics.embedding_quality(ref, run(model, ids), np.ones(ids.shape))["cosine_min"] > 0.98
    factory, info = precision.autocast_context("bf16", "cpu", cpu_flags=bf16)
    assert factory() is not factory()  # a fresh context per forward
    out = run(bert, ids, factory)
    assert next(bert.parameters()).dtype == torch.float32 and info["precision_mode"] == "autocast"
    assert metrics.embedding_quality(ref, out, np.ones(ids.shape))["cosine_min"] > 0.98
    same, _ = precision.cast_precision(copy.deepcopy(bert), "fp32", "cpu", cpu_flags=set())
    np.testing.assert_array_equal(run(same, ids), ref)


@pytest.mark.parametrize("dtype, flags, match", [("bf16", set(), "avx512_bf16"),
                                                 ("fp16", {"avx512_bf16", "avx512_fp16"}, "amx_fp16")])
def test_precision_refused_without_cpu_support(bert, dtype, flags, match):
    with pytest.raises(Unsupported, match=match):
        precision.cast_precision(bert, dtype, "cpu", cpu_flags=flags)
    with pytest.raises(Unsupported, match=match):
        precision.autocast_context(dtype, "cpu", cpu_flags=flags)


def test_tf32_is_a_noop_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    assert tq.tf32_matmul(True) == {"tf32_matmul": True, "applied": False,
                                    "note": "no CUDA device: TF32 is a CUDA matmul mode"}


def test_import_does_not_load_torch():
    code = "import sys, bench.variants.torch_quant; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
