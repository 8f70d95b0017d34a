"""Pruning transforms on tiny randomly initialised BERT, GPT-2 and Llama models."""

from __future__ import annotations

import copy
import warnings

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from bench.errors import Unsupported  # noqa: E402
from bench.variants import sparse_2to4, sparse_csr, sparsity  # noqa: E402
from bench.variants.pruning import layout, ranking, structured, unstructured  # noqa: E402

# Larger init than the default 0.02 so that every head and neuron visibly moves the output: the
# equivalence tests would be weak if removing units changed the output by less than atol anyway.
INIT = 0.2


def make(family: str):
    torch.manual_seed(0)
    if family == "bert":
        cfg = transformers.BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                      intermediate_size=128, vocab_size=1000, initializer_range=INIT)
        model = transformers.BertModel(cfg)
    elif family == "gpt2":
        cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=1000, initializer_range=INIT)
        model = transformers.GPT2LMHeadModel(cfg)
    else:
        cfg = transformers.LlamaConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                       num_key_value_heads=2, intermediate_size=128, vocab_size=1000,
                                       initializer_range=INIT)
        model = transformers.LlamaForCausalLM(cfg)
    return model.eval()


def inputs(family: str):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 1000, (2, 8), generator=g)
    mask = torch.ones_like(ids)
    if family == "bert":
        mask[1, 6:] = 0  # padding in the second row
    return {"input_ids": ids, "attention_mask": mask}


def run(model, family):
    with torch.no_grad():
        out = model(**inputs(family))
    return out.last_hidden_state if family == "bert" else out.logits


def blocks(model, family):
    if family == "bert":
        return model.encoder.layer
    if family == "gpt2":
        return model.transformer.h
    return model.model.layers


def mask_units(model, family, heads: dict, ffn: dict, head_dim=16):
    """Zero, in the unpruned model, exactly what pruning removes: the output-projection inputs of
    the heads and the up/gate rows plus down columns of the FFN neurons (independent of variants/pruning/)."""
    with torch.no_grad():
        for i, block in enumerate(blocks(model, family)):
            dims = [h * head_dim + j for h in heads.get(i, []) for j in range(head_dim)]
            n = ffn.get(i, [])
            if family == "bert":
                block.attention.output.dense.weight[:, dims] = 0
                block.intermediate.dense.weight[n] = 0
                block.intermediate.dense.bias[n] = 0
                block.output.dense.weight[:, n] = 0
            elif family == "gpt2":  # Conv1D weights are (in, out)
                block.attn.c_proj.weight[dims, :] = 0
                block.mlp.c_fc.weight[:, n] = 0
                block.mlp.c_fc.bias[n] = 0
                block.mlp.c_proj.weight[n, :] = 0
            else:
                block.self_attn.o_proj.weight[:, dims] = 0
                block.mlp.gate_proj.weight[n] = 0
                block.mlp.up_proj.weight[n] = 0
                block.mlp.down_proj.weight[:, n] = 0


# --------------------------------------------------------------------------- unstructured


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
@pytest.mark.parametrize("scope", ["layer", "global"])
def test_magnitude_prune_hits_target_and_is_permanent(family, scope):
    model = make(family)
    model, info = unstructured.magnitude_prune(model, 0.6, scope=scope)
    assert info["target_sparsity"] == 0.6
    per = info["per_layer"]
    assert per and info["pruned_tensors"] == len(per)
    if scope == "layer":
        for name, s in per.items():
            zeros = s["numel"] - s["nonzero"]
            assert abs(zeros - 0.6 * s["numel"]) <= 1, name
    else:
        zeros = info["pruned_numel"] - info["pruned_nonzero"]
        assert abs(zeros - 0.6 * info["pruned_numel"]) <= len(per)
        assert len({round(s["sparsity"], 3) for s in per.values()}) > 1  # global: layers differ
    assert abs(info["achieved_sparsity"] - 0.6) < 1e-3
    assert info["achieved_sparsity_all_linear"] <= info["achieved_sparsity"] + 1e-9
    # permanent: plain parameters, no masks or pruning hooks left
    report = sparsity.sparsity_report(model)
    assert report["pruning_reparametrizations"] == []
    assert not any(k.endswith(("weight_orig", "weight_mask")) for k in model.state_dict())
    assert all(not m._forward_pre_hooks for m in model.modules())
    # embeddings and the LM head stay dense
    assert all("lm_head" not in n and "embed" not in n and "wte" not in n for n in per)
    if family != "bert":
        assert (model.lm_head.weight != 0).all()
    assert torch.isfinite(run(model, family)).all()


def test_magnitude_prune_include_filter():
    model = make("bert")
    model, info = unstructured.magnitude_prune(model, 0.5, scope="layer", include=lambda n, m: "intermediate" in n)
    assert set(info["per_layer"]) == {"encoder.layer.0.intermediate.dense", "encoder.layer.1.intermediate.dense"}
    assert (model.encoder.layer[0].attention.self.query.weight != 0).all()


# --------------------------------------------------------------------------- CSR path


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_sparse_csr_path_matches_dense(family):
    model, _ = unstructured.magnitude_prune(make(family), 0.7, scope="layer")
    ref = run(model, family)
    sparse, info = sparse_csr.sparse_linear(copy.deepcopy(model), min_sparsity=0.5)
    assert info["replaced"] == {"bert": 13, "gpt2": 8}[family]  # BERT: 6 per layer + pooler
    assert abs(info["replaced_sparsity"] - 0.7) < 1e-3
    kinds = {type(m).__name__ for m in sparse.modules()}
    assert "SparseLinear" in kinds
    torch.testing.assert_close(run(sparse, family), ref, atol=1e-5, rtol=1e-5)
    report = sparsity.sparsity_report(sparse)
    assert any(s.get("format") == "csr" for s in report["per_layer"].values())
    # the size of a CSR model is its index and value arrays (a sparse tensor has no storage to ask)
    from bench.measurement.size import lookup_table_bytes, weight_bytes

    csr = [m.weight_csr for m in sparse.modules() if type(m).__name__ == "SparseLinear"]
    csr_bytes = sum(t.crow_indices().nbytes + t.col_indices().nbytes + t.values().nbytes for t in csr)
    dense = {t.data_ptr(): t.nbytes for t in sparse.state_dict().values() if t.layout == torch.strided}  # tied once
    dense_kept = sum(dense.values())
    assert weight_bytes(sparse) == csr_bytes + dense_kept
    assert lookup_table_bytes(sparse) > 0


def test_sparse_csr_skips_dense_layers():
    model = make("bert")
    _, info = sparse_csr.sparse_linear(model, min_sparsity=0.5)
    assert info["replaced"] == 0 and info["skipped"]


# --------------------------------------------------------------------------- structured


@pytest.mark.parametrize(
    "family,kwargs",
    [
        ("bert", {}),
        ("gpt2", {}),
        ("llama", {"gqa": "group"}),
        ("llama", {"gqa": "within"}),
        ("bert", {"method": "activation"}),
        ("llama", {"method": "activation", "gqa": "within"}),
    ],
)
def test_structured_prune_equals_masked_original(family, kwargs):
    model = make(family)
    original = copy.deepcopy(model)
    if kwargs.get("method") == "activation":  # numpy batches, as bench.models.inputs.make_inputs gives
        kwargs = dict(kwargs, calibration_batches=[{k: v.numpy() for k, v in inputs(family).items()}])
    pruned, info = structured.structured_prune(model, head_fraction=0.5, ffn_fraction=0.5, **kwargs)

    assert info["params_after"] < info["params_before"]
    # block matmul weights: halving heads and FFN halves them, except GQA "within" keeps all of k/v
    # (Llama block: q,o 64x64, k,v 64x32, FFN 3x64x128 = 36864; within: 4*2048 + 12288 = 20480)
    expected = 20480 / 36864 if kwargs.get("gqa") == "within" else 0.5
    assert info["matmul_param_ratio"] == pytest.approx(expected)
    assert sum(p.numel() for p in pruned.parameters()) == info["params_after"]
    assert info["achieved_head_fraction"] == 0.5 and info["achieved_ffn_fraction"] == 0.5
    heads = {i: v["removed"] for i, v in info["heads"].items()}
    ffn = {i: v["removed"] for i, v in info["ffn"].items()}
    width = 256 if family == "gpt2" else 128  # GPT-2 n_inner defaults to 4 * n_embd
    assert all(len(h) == 2 for h in heads.values()) and all(len(n) == width // 2 for n in ffn.values())

    out = run(pruned, family)
    unmasked = run(original, family)
    mask_units(original, family, heads, ffn)
    masked = run(original, family)
    assert (out - unmasked).abs().max() > 1e-2  # removal matters, so the comparison below is meaningful
    torch.testing.assert_close(out, masked, atol=1e-5, rtol=1e-5)

    for block in blocks(pruned, family):
        if family == "bert":
            assert block.attention.self.num_attention_heads == 2 and block.attention.self.query.out_features == 32
            assert block.intermediate.dense.out_features == 64 and block.output.dense.in_features == 64
        elif family == "gpt2":
            assert block.attn.num_heads == 2 and block.attn.split_size == 32
            assert tuple(block.attn.c_attn.weight.shape) == (64, 96)
            assert tuple(block.mlp.c_fc.weight.shape) == (64, 128)  # n_inner default 4*64 = 256 -> 128
        else:
            a = block.self_attn
            assert a.q_proj.out_features == 32 and a.o_proj.in_features == 32
            if kwargs["gqa"] == "group":
                assert a.k_proj.out_features == 16 and a.num_key_value_groups == 2
            else:
                assert a.k_proj.out_features == 32 and a.num_key_value_groups == 1
            assert block.mlp.down_proj.in_features == 64


def test_llama_pruned_config_rebuilds_same_shapes():
    model, _ = structured.structured_prune(make("llama"), head_fraction=0.5, ffn_fraction=0.5)
    cfg = model.config
    assert cfg.intermediate_size == 64 and cfg.num_attention_heads == 2 and cfg.num_key_value_heads == 1
    assert cfg.head_dim == 16 and cfg.pruned_layout["intermediate_size"] == [64, 64]
    rebuilt = transformers.LlamaForCausalLM(cfg).eval()
    rebuilt.load_state_dict(model.state_dict())
    torch.testing.assert_close(run(rebuilt, "llama"), run(model, "llama"))


def test_prune_heads_per_layer_sizes_and_generation():
    model = make("llama")
    original = copy.deepcopy(model)
    model, info = layout.prune_heads(model, {0: [0, 1]})  # layer 0 loses KV group 0; layer 1 untouched
    assert info["heads"][0]["kv_heads_after"] == 1 and info["heads"][0]["kv_removed"] == [0]
    assert model.config.pruned_layout["num_attention_heads"] == [2, 4]
    assert model.config.num_attention_heads == 4  # not uniform: global field unchanged
    mask_units(original, "llama", {0: [0, 1]}, {})
    torch.testing.assert_close(run(model, "llama"), run(original, "llama"), atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # KV cache with different head counts per layer
        a = model.generate(inputs("llama")["input_ids"][:1], max_new_tokens=3, do_sample=False)
        b = original.generate(inputs("llama")["input_ids"][:1], max_new_tokens=3, do_sample=False)
    assert torch.equal(a, b)


def test_prune_heads_rejects_uneven_gqa_and_empty_layers():
    with pytest.raises(ValueError, match="same number"):
        layout.prune_heads(make("llama"), {0: [0]})
    with pytest.raises(ValueError, match="every head"):
        layout.prune_heads(make("bert"), {0: [0, 1, 2, 3]})
    with pytest.raises(ValueError, match="every FFN"):
        layout.prune_ffn_neurons(make("gpt2"), neurons_to_keep={0: []})


def test_prune_ffn_neurons_keep_and_prune_agree():
    a, ia = layout.prune_ffn_neurons(make("gpt2"), neurons_to_prune={1: list(range(0, 256, 2))})
    b, ib = layout.prune_ffn_neurons(make("gpt2"), neurons_to_keep={1: list(range(1, 256, 2))})
    assert ia["ffn"][1]["after"] == ib["ffn"][1]["after"] == 128
    torch.testing.assert_close(run(a, "gpt2"), run(b, "gpt2"))
    assert a.config.pruned_layout["intermediate_size"] == [256, 128]


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_rank_functions(family):
    model = make(family)
    heads = ranking.rank_heads(model)
    ffn = ranking.rank_ffn_neurons(model, method="activation", calibration_batches=[inputs(family)])
    assert sorted(heads) == [0, 1] and all(len(v) == 4 for v in heads.values())
    width = 256 if family == "gpt2" else 128
    assert all(len(v) == width and min(v) >= 0 for v in ffn.values())
    with pytest.raises(ValueError):
        ranking.rank_heads(model, method="activation")


def test_unsupported_architecture():
    with pytest.raises(Unsupported):
        structured.structured_prune(torch.nn.Sequential(torch.nn.Linear(4, 4)))


# --------------------------------------------------------------------------- composition with int8


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_structured_then_dynamic_int8(family):
    model, _ = structured.structured_prune(make(family), head_fraction=0.5, ffn_fraction=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    assert any("quantized" in type(m).__module__ for m in q.modules())
    assert torch.isfinite(run(q, family)).all()


# --------------------------------------------------------------------------- 2:4


def test_two_four_mask():
    w = torch.randn(8, 16)
    m = sparse_2to4.two_four_mask(w)
    assert (m.reshape(8, 4, 4).sum(-1) == 2).all()
    kept_min = w.abs().masked_fill(~m, float("inf")).reshape(8, 4, 4).min(-1).values
    dropped_max = w.abs().masked_fill(m, -1).reshape(8, 4, 4).max(-1).values
    assert (kept_min >= dropped_max).all()


def test_semi_structured_unsupported_on_cpu():
    with pytest.raises(Unsupported, match="CUDA"):
        sparse_2to4.semi_structured_2to4(make("bert"), "cpu")


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 0),
                    reason="2:4 semi-structured sparsity needs CUDA on sm_80+")
def test_semi_structured_cuda():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(num_hidden_layers=2, hidden_size=128, num_attention_heads=4,
                                  intermediate_size=256, vocab_size=1000)
    model = transformers.BertModel(cfg).eval()
    with pytest.raises(Unsupported, match="float16"):
        sparse_2to4.semi_structured_2to4(copy.deepcopy(model), "cuda")  # fp32 is refused unless a cast is asked for
    model, info = sparse_2to4.semi_structured_2to4(model, "cuda", dtype=torch.float16)
    assert info["layers"] and info["dtype"] == "float16"
    ids = torch.randint(0, 1000, (4, 32), device="cuda")
    with torch.no_grad():
        out = model(input_ids=ids).last_hidden_state
    assert torch.isfinite(out).all()
