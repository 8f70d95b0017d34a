"""ONNX tools on tiny random BERT / GPT-2: export, caching, fusion counts, quantizers, sessions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.errors import Unsupported

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from bench import cache  # noqa: E402
from bench.backends.onnxruntime import export as onnx_export  # noqa: E402
from bench.backends.onnxruntime import graph as onnx_graph  # noqa: E402
from bench.backends.onnxruntime import session as ort_session  # noqa: E402

OUTPUT = {"bert": "last_hidden_state", "gpt2": "logits"}


def tiny(kind: str):
    torch.manual_seed(0)
    if kind == "gpt2":
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2)).eval()
    return transformers.BertModel(transformers.BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=2,
                                                          intermediate_size=128)).eval()


def torch_out(model, kind, feed):
    with torch.inference_mode():
        out = model(**{k: torch.from_numpy(v) for k, v in feed.items()})
    return getattr(out, OUTPUT[kind]).float().numpy()


def make_feed(batch, seq, seed=1, pad=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, seq), dtype=np.int64)
    if pad:
        mask[-1, seq - pad:] = 0  # right padding on the last row
    return {"input_ids": rng.integers(0, 1000, (batch, seq), dtype=np.int64), "attention_mask": mask}


def cosine(a, b):
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def run(path, feed):
    session = ort_session.make_session(path, "cpu", "all", 1, 1)
    return ort_session.run_fn(session, feed, "cpu")()[0]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One export per tiny model, shared by the tests: {kind: (model, path)}."""
    cache = tmp_path_factory.mktemp("onnx")
    out = {}
    for kind in ("bert", "gpt2"):
        model = tiny(kind)
        example = {k: torch.from_numpy(v) for k, v in make_feed(2, 16).items()}
        path, hit = onnx_export.cached_export(model, example, OUTPUT[kind], {"model": kind}, cache)
        assert not hit
        out[kind] = (model, path)
    return out


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_export_matches_torch_at_other_shapes(exported, kind):
    model, path = exported[kind]
    info = onnx_export.export_info(path)
    assert info["exporter"] == "torchscript" and info["attn_implementation"] == "eager"
    assert info["max_abs_diff_vs_torch"] < 1e-4
    # the export left the model as it was: eval mode, its own attention implementation
    assert not model.training and model.config._attn_implementation == "sdpa"
    session = ort_session.make_session(path, "cpu", "all", 1, 1)
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    for batch, seq, pad in [(2, 16, 0), (3, 24, 5), (1, 7, 0)]:
        feed = make_feed(batch, seq, pad=pad)
        got = ort_session.run_fn(session, feed, "cpu")()[0]
        np.testing.assert_allclose(got, torch_out(model, kind, feed), atol=1e-4, rtol=1e-4)


def test_export_falls_back_to_dynamo(exported, tmp_path, monkeypatch):
    model, _ = exported["bert"]

    def broken(*args, **kwargs):
        raise RuntimeError("torchscript exporter gone")

    monkeypatch.setattr(onnx_export, "_export_torchscript", broken)
    example = {k: torch.from_numpy(v) for k, v in make_feed(2, 16).items()}
    info = onnx_export.export_onnx(model, example, "last_hidden_state", tmp_path / "m.onnx", 18)
    assert info["exporter"] == "dynamo" and "torchscript exporter gone" in info["fallback_from"]["torchscript"]
    feed = make_feed(3, 20, pad=4)
    np.testing.assert_allclose(run(tmp_path / "m.onnx", feed), torch_out(model, "bert", feed), atol=1e-4, rtol=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]


def test_export_cache_hit_miss_and_files(exported, tmp_path):
    model, _ = exported["bert"]
    example = {k: torch.from_numpy(v) for k, v in make_feed(2, 8).items()}
    path, hit = onnx_export.cached_export(model, example, "last_hidden_state", {"m": "a", "seq": 8}, tmp_path)
    assert not hit and path.exists()
    again, hit = onnx_export.cached_export(model, example, "last_hidden_state", {"seq": 8, "m": "a"}, tmp_path)
    assert hit and again == path
    other, hit = onnx_export.cached_export(model, example, "last_hidden_state", {"m": "b", "seq": 8}, tmp_path)
    assert not hit and other != path
    opset, hit = onnx_export.cached_export(model, example, "last_hidden_state", {"m": "a", "seq": 8}, tmp_path,
                                          opset=17)
    assert not hit and opset != path
    assert onnx.load(str(opset), load_external_data=False).opset_import[0].version == 17
    assert json.loads((path.parent / "key.json").read_text()) == {"m": "a", "seq": 8, "opset": 18}
    # weights live in one external-data file, counted by onnx_file_bytes; no temp folders left behind
    assert (path.parent / "model.onnx.data").exists()
    assert onnx_export.onnx_file_bytes(path) == path.stat().st_size + (path.parent / "model.onnx.data").stat().st_size
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_build_once_leaves_nothing_on_failure(tmp_path):
    def broken(folder):
        (folder / "model.onnx").write_bytes(b"half")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        cache.build_once(tmp_path / "k", broken)
    assert list(tmp_path.iterdir()) == []
    assert cache.build_once(tmp_path / "k", lambda folder: (folder / "x").write_text("ok")) is False
    assert cache.build_once(tmp_path / "k", lambda folder: None) is True


def test_optimize_bert_fuses_attention(exported, tmp_path):
    model, path = exported["bert"]
    out = tmp_path / "opt.onnx"
    info = onnx_graph.optimize_transformer(path, out, "bert", 2, 64, 1)
    assert "fusion_error" not in info
    fused = {k.removeprefix("com.microsoft."): n for k, n in info["fused_ops"].items()}
    assert all(k.startswith("com.microsoft.") for k in info["fused_ops"])
    assert fused["Attention"] == 2 and fused["SkipLayerNormalization"] == 4 and fused["BiasGelu"] == 2
    assert fused["EmbedLayerNormalization"] == 1 and info["nodes_after"] < info["nodes_before"]
    assert info["max_abs_diff_vs_unfused"] < 1e-4
    feed = make_feed(3, 24, pad=5)
    np.testing.assert_allclose(run(out, feed), torch_out(model, "bert", feed), atol=1e-4, rtol=1e-4)


def test_optimize_gpt2_and_llama_types(exported, tmp_path):
    model, path = exported["gpt2"]
    out = tmp_path / "opt.onnx"
    info = onnx_graph.optimize_transformer(path, out, "gpt2", 2, 64, 1)
    assert "fusion_error" not in info and info["fused_ops"].get("com.microsoft.SkipLayerNormalization", 0) > 0
    feed = make_feed(2, 12)
    np.testing.assert_allclose(run(out, feed), torch_out(model, "gpt2", feed), atol=1e-4, rtol=1e-4)
    ort_type, note = onnx_graph.ort_model_type("llama")
    assert ort_type == "gpt2" and "llama" in note
    assert onnx_graph.ort_model_type("bert") == ("bert", None)


def test_cpu_int8_settings():
    assert onnx_graph.cpu_int8_settings({"avx2", "avx512f", "avx512_vnni"})["reduce_range"] is False
    assert onnx_graph.cpu_int8_settings({"avx2", "amx_int8"})["reduce_range"] is False
    no_vnni = onnx_graph.cpu_int8_settings({"sse4_2", "avx2", "avx512f"})
    assert no_vnni["reduce_range"] is True and "saturat" in no_vnni["reason"]
    assert onnx_graph.cpu_int8_settings({"asimd", "fp"})["reduce_range"] is False
    assert onnx_graph.cpu_int8_settings(set())["per_channel"] is True


def test_fragile_matmuls_are_mlp_down_projections(exported):
    gpt2 = onnx.load(str(exported["gpt2"][1]))
    assert onnx_graph.gemm_to_matmul(gpt2) == 8  # Conv1D projections: 4 per layer
    assert len(onnx_graph.fragile_matmuls(gpt2)) == 2
    bert = onnx.load(str(exported["bert"][1]), load_external_data=False)
    assert all("output/dense" in n and "attention" not in n for n in onnx_graph.fragile_matmuls(bert))
    assert len(onnx_graph.fragile_matmuls(bert)) == 2


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_quantizers_run_and_stay_close(exported, tmp_path, kind):
    model, path = exported[kind]
    feed = make_feed(2, 16, seed=3)
    ref = torch_out(model, kind, feed)
    calibration = [make_feed(1, 16, seed=10 + i) for i in range(3)]
    cases = {
        "dynamic": lambda out: onnx_graph.quantize_dynamic_int8(path, out, True, False),
        "static": lambda out: onnx_graph.quantize_static_int8(path, out, calibration, "MinMax", True, False),
        "static-entropy": lambda out: onnx_graph.quantize_static_int8(
            path, out, calibration, "Entropy", True, False, entropy_bins=256),
        "int4": lambda out: onnx_graph.quantize_int4_weights(path, out, 32, True),
    }
    expected_ops = {"dynamic": "MatMulInteger", "static": "QuantizeLinear", "static-entropy": "QuantizeLinear",
                    "int4": "com.microsoft.MatMulNBits"}
    for name, quantize in cases.items():
        out = tmp_path / f"{name}.onnx"
        info = quantize(out)
        assert info["ops"].get(expected_ops[name], 0) > 0, (name, info)
        if kind == "gpt2":
            assert info.get("gemm_rewritten_as_matmul", 8) == 8, (name, info)
        got = run(out, feed)
        assert got.shape == ref.shape and np.isfinite(got).all()
        assert cosine(got, ref) > 0.98, (kind, name, cosine(got, ref))
    assert "QOperator" in onnx_graph.quantize_dynamic_int8(path, tmp_path / "d2.onnx", True, True)["format"]


def test_static_int8_on_fused_graph_quantizes_activations(exported, tmp_path):
    """Contrib ops defeat plain shape inference; without symbolic shapes only weights would be quantized."""
    _, path = exported["bert"]
    fused = tmp_path / "opt.onnx"
    onnx_graph.optimize_transformer(path, fused, "bert", 2, 64, 1)
    info = onnx_graph.quantize_static_int8(fused, tmp_path / "q.onnx", [make_feed(1, 16, seed=5)], "MinMax", True,
                                           False)
    assert info["ops"].get("QuantizeLinear", 0) > 0 and len(info["nodes_excluded"]) == 2
    assert np.isfinite(run(tmp_path / "q.onnx", make_feed(2, 16))).all()


def test_make_session_options_and_errors(exported, tmp_path):
    _, path = exported["bert"]
    with pytest.raises(ValueError):
        ort_session.make_session(path, "cpu", "fastest", 1, 1)
    session = ort_session.make_session(path, "cpu", "disable", 1, 2)
    assert session.get_providers() == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="missing"):
        ort_session.run_fn(session, {"input_ids": make_feed(1, 4)["input_ids"]}, "cpu")
    fn = ort_session.run_fn(session, {**make_feed(1, 4), "token_type_ids": np.zeros((1, 4), np.int64)}, "cpu")
    assert fn()[0].shape == (1, 4, 64)  # inputs the graph does not take are dropped


def test_cuda_is_unsupported_without_the_provider(exported):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA provider present")
    with pytest.raises(Unsupported, match="CUDAExecutionProvider"):
        ort_session.make_session(exported["bert"][1], "cuda", "all", 1, 1)


@pytest.mark.cuda
def test_cuda_run_fn_with_io_binding(exported):
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("no CUDA provider")
    model, path = exported["bert"]
    try:
        session = ort_session.make_session(path, "cuda", "all", 1, 1)
    except Unsupported as exc:
        pytest.skip(str(exc))
    feed = make_feed(2, 16)
    fn = ort_session.run_fn(session, feed, "cuda")
    fn()
    got = fn.binding.copy_outputs_to_cpu()[0]
    np.testing.assert_allclose(got, torch_out(model, "bert", feed), atol=1e-3, rtol=1e-3)


# --- the export cache's key: the weights and every input of the transforms ------------------------------

def _points(write_suite, **suite):
    from conftest import tiny_suite

    from bench.config import load_suite
    from bench.plan import build_plan

    path = write_suite(tiny_suite(backends=["onnxruntime"], quality={"enabled": False}, **suite))
    return build_plan(load_suite(path), path).points


def _exported(point, cache_dir) -> dict:
    """Prepare `point` as the child does and return what its export recorded (path, cache hit)."""
    from bench.backends import backends
    from bench.isolation.child import load_point, run_context
    from bench.variants.pipeline import prepare

    source, loaded, inputs, _ = load_point(point, cache_dir)
    ctx = run_context(point, source, loaded, 1, cache_dir)
    prepare(loaded, point.variant, backends.get(point.backend)(), inputs, ctx)
    return ctx.export_info


def test_export_cache_sees_a_local_model_resaved_with_other_weights(write_suite, tmp_path):
    """Defect: the export key held no fingerprint of the weights, so a `local` (or `hub`) model updated in place
    kept being served its old graph."""
    from bench.models.sources import stand_in_tokenizer

    folder = tmp_path / "model"

    def save(seed: int) -> None:
        torch.manual_seed(seed)
        config = transformers.BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2,
                                         intermediate_size=64)
        transformers.BertModel(config).save_pretrained(folder)
        stand_in_tokenizer()[0].save_pretrained(folder)

    save(0)
    (point,) = _points(write_suite, models=[{"name": "local-bert", "source": "local", "id": str(folder)}],
                       variants=["ort-fp32"])
    cache_dir = tmp_path / "cache"
    first = _exported(point, cache_dir)
    assert not first["cache_hit"] and _exported(point, cache_dir) == {**first, "cache_hit": True}
    save(1)
    again = _exported(point, cache_dir)
    assert not again["cache_hit"] and again["path"] != first["path"]


def test_activation_ranked_prune_at_two_seq_lens_is_two_cache_entries(write_suite, tmp_path):
    """Defect: activation-ranked `prune-structured` calibrates at the run's seq_len, which the export key
    omitted, so every ORT point after the first reused the first seq_len's pruned graph."""
    from conftest import TINY_BERT

    act = {"name": "act", "backend": "onnxruntime", "transforms": [
        {"name": "prune-structured", "options": {"method": "activation", "calibration_samples": 2}}]}
    short, long = _points(write_suite, models=[TINY_BERT], variants=[act], seq_lens=[16, 32])
    cache_dir = tmp_path / "cache"
    at_16, at_32 = _exported(short, cache_dir), _exported(long, cache_dir)
    assert not at_16["cache_hit"] and not at_32["cache_hit"] and at_16["path"] != at_32["path"]
    assert len(list((cache_dir / "onnx").iterdir())) == 2
    assert _exported(short, cache_dir)["path"] == at_16["path"]  # each length finds its own entry again
