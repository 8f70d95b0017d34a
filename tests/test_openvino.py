"""The OpenVINO engine on tiny BERT and GPT-2: ov-fp32, ov-bf16 and ov-int8 from plan to report, the conversion
and the NNCF quantization cached and timed apart, calibration on held-out text only, options refused at plan
time, devices OpenVINO does not list."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

openvino = pytest.importorskip("openvino")
nncf = pytest.importorskip("nncf")

from bench.backends import backends  # noqa: E402
from bench.backends.openvino.backend import ov_device  # noqa: E402
from bench.cli import main  # noqa: E402
from bench.config import load_suite  # noqa: E402
from bench.devices.cpu import BF16_FLAGS  # noqa: E402
from bench.errors import Unsupported  # noqa: E402
from bench.hardware.machine import cpu_flags  # noqa: E402
from bench.isolation.child import load_point, run_context  # noqa: E402
from bench.plan import build_plan  # noqa: E402
from bench.records.store import load_records  # noqa: E402
from bench.variants.pipeline import prepare  # noqa: E402

from conftest import TINY_BERT, TINY_GPT2, tiny_suite  # noqa: E402

OV_VARIANTS = ["ov-fp32", "ov-bf16", "ov-int8"]


def _plan(write_suite, **suite):
    path = write_suite(tiny_suite(**suite))
    return build_plan(load_suite(path), path)


def _prepare(point, cache_dir: Path, **context):
    """Prepare `point` as the child does (the pipeline, then the backend's session), with `context` changed on
    its RunContext; returns (prepared, ctx, timed inputs)."""
    source, loaded, inputs, _ = load_point(point, cache_dir)
    ctx = run_context(point, source, loaded, 1, cache_dir)
    for name, value in context.items():
        setattr(ctx, name, value)
    return prepare(loaded, point.variant, backends.get(point.backend)(), inputs, ctx), ctx, inputs


def _bert_points(write_suite, *variants) -> dict:
    """Tiny BERT points of `variants` at lengths 16 and 32, by (variant, length)."""
    points = _plan(write_suite, models=[TINY_BERT], variants=list(variants), seq_lens=[16, 32],
                   quality={"enabled": False}).points
    return {(p.variant.name, p.seq_len): p for p in points}


def _ir_bytes(xml: str) -> int:
    return Path(xml).stat().st_size + Path(xml).with_suffix(".bin").stat().st_size


def test_openvino_variants_run_from_plan_to_report_against_the_pytorch_baseline(write_suite, tmp_path):
    quality = {"encoder_samples": 2, "encoder_seq_len": 16, "lm_windows": 2, "lm_window": 32, "lm_stride": 32}
    path = write_suite(tiny_suite(variants=["fp32", *OV_VARIANTS], scenarios=["single-stream", "generate"],
                                  quality=quality))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    recs = {(r.config.model.name, r.config.variant.name, r.config.scenario.name): r for r in load_records(out)}
    native_bf16 = bool(BF16_FLAGS & cpu_flags())
    for model in ("tiny-bert", "tiny-gpt2"):
        for variant, precision in zip(OV_VARIANTS, ["fp32", "bf16", "int8"]):
            rec = recs[(model, variant, "single-stream")]
            if variant == "ov-bf16" and not native_bf16:  # the CPU device refuses an emulated bf16
                assert rec.status == "unsupported" and "avx512_bf16" in rec.error, rec.error
                continue
            assert rec.status == "ok", rec.error
            session = rec.provenance.backend
            assert session.engine == "openvino" and session.engine_version == openvino.__version__
            assert session.properties["compiled"]["INFERENCE_PRECISION_HINT"] == {"bf16": "bf16"}.get(precision, "f32")
            assert session.properties["compiled"]["PERFORMANCE_HINT"] == "LATENCY"
            assert session.threads.intra_op == 1 and session.file_bytes == _ir_bytes(session.file)
            assert 0 < session.lookup_table_bytes < session.file_bytes
            assert rec.metrics.work.compute_precision == precision
            quality = rec.metrics.quality
            assert quality.verdict == "not meaningful (random weights)"  # compared with fp32, judged as such
            if model == "tiny-bert":
                assert quality.cosine_mean > 0.99
            else:
                assert 0.9 < quality.perplexity_ratio < 1.1 and quality.top1_agreement > 0.8
        # ov-fp32 converted the IR, ov-int8 quantized it: each inside the point's transform phase, not its traffic
        converted = recs[(model, "ov-fp32", "single-stream")]
        conversion = converted.provenance.backend.properties["conversion"]
        assert not conversion["cache_hit"] and converted.phases.transform_s >= conversion["convert_s"] > 0
        assert conversion["max_abs_diff_vs_torch"] < 1e-4
        quantized = recs[(model, "ov-int8", "single-stream")]
        (nncf_int8,) = quantized.provenance.transforms
        assert nncf_int8["name"] == "nncf-int8" and nncf_int8["fake_quantize_ops"] > 0
        assert quantized.phases.transform_s >= nncf_int8["quantize_s"] > 0
    generate = recs[("tiny-gpt2", "ov-fp32", "generate")]
    assert generate.status == "unsupported" and "KV cache" in generate.error

    report = tmp_path / "report"
    assert main(["report", str(out), "--out", str(report)]) == 0
    efficiency = pd.read_csv(report / "efficiency.csv")
    ov = efficiency[efficiency["backend"] == "openvino"]
    assert set(zip(ov["variant"], ov["precision"])) >= {("ov-fp32", "fp32"), ("ov-int8", "int8")}
    assert (ov["achieved_gflops"] > 0).all()
    comparison = pd.read_csv(report / "comparison.csv")
    measured = comparison[(comparison["variant"] == "ov-int8") & comparison["speedup_p50"].notna()]
    assert set(measured["model"]) == {"tiny-bert", "tiny-gpt2"}  # measured against the PyTorch fp32 baseline


def test_conversion_runs_once_per_key_and_is_recorded_apart(write_suite, tmp_path):
    point = _bert_points(write_suite, "ov-fp32", "ov-bf16")
    cache = tmp_path / "cache"
    fp32, _, _ = _prepare(point["ov-fp32", 16], cache)
    conversion = fp32.session.describe().properties["conversion"]
    assert not conversion["cache_hit"] and conversion["convert_s"] > 0
    # the bf16 hint runs on the same fp32 IR, and dynamic shapes let one IR serve every length
    for other in (point["ov-bf16", 16], point["ov-fp32", 32]):
        again, _, _ = _prepare(other, cache)
        assert again.session.describe().properties["conversion"] == {**conversion, "cache_hit": True}
    assert len(list((cache / "openvino").iterdir())) == 1


def test_nncf_quantization_runs_once_per_calibration_key_and_is_recorded_apart(write_suite, tmp_path):
    point = _bert_points(write_suite, "ov-fp32", "ov-int8")
    cache = tmp_path / "cache"
    fp32, _, _ = _prepare(point["ov-fp32", 16], cache)
    conversion = fp32.session.describe().properties["conversion"]
    int8, _, _ = _prepare(point["ov-int8", 16], cache)
    assert int8.session.describe().properties["conversion"] == {**conversion, "cache_hit": True}  # one IR, shared
    (applied,) = int8.applied
    assert applied.compute_precision == "int8" and not applied.info["cache_hit"] and applied.info["quantize_s"] > 0
    again, _, _ = _prepare(point["ov-int8", 16], cache)
    assert again.applied[0].info == {**applied.info, "cache_hit": True}
    assert again.session.describe().file == int8.session.describe().file

    # dynamic shapes: one IR serves every length; the calibration at another length is another quantization
    longer, _, _ = _prepare(point["ov-int8", 32], cache)
    assert longer.session.describe().properties["conversion"]["path"] == conversion["path"]
    assert not longer.applied[0].info["cache_hit"]
    assert longer.session.describe().file != int8.session.describe().file
    assert int8.session.describe().file_bytes < fp32.session.describe().file_bytes / 2  # int8 weights on disk


@pytest.mark.parametrize("model", [TINY_BERT, TINY_GPT2], ids=["bert", "gpt2"])
def test_the_ir_matches_torch_at_other_shapes_and_with_padding(model, write_suite, tmp_path):
    import torch

    (point,) = _plan(write_suite, models=[model], variants=["ov-fp32"], quality={"enabled": False}).points
    prepared, ctx, _ = _prepare(point, tmp_path)
    rng = np.random.default_rng(0)
    for batch, seq, pad in [(3, 24, 5), (1, 7, 0), (5, 40, 0)]:
        mask = np.ones((batch, seq), dtype=np.int64)
        mask[-1, seq - pad:] = 0
        feed = {"input_ids": rng.integers(0, 1000, (batch, seq), dtype=np.int64), "attention_mask": mask}
        with torch.inference_mode():
            out = prepared.model(**{k: torch.from_numpy(v) for k, v in feed.items()})
        want = (out.logits if ctx.task == "causal-lm" else out.last_hidden_state).numpy()
        np.testing.assert_allclose(prepared.session.infer(feed), want, atol=1e-4, rtol=1e-4)


def test_lookup_tables_are_the_gathered_embeddings_and_a_table_shared_with_the_lm_head_is_streamed(write_suite,
                                                                                                  tmp_path):
    bert, gpt2 = _plan(write_suite, models=[TINY_BERT, TINY_GPT2], variants=["ov-fp32"],
                       quality={"enabled": False}).points
    prepared, ctx, _ = _prepare(bert, tmp_path)
    config = ctx.model_config
    tables = (config.vocab_size + config.max_position_embeddings + config.type_vocab_size) * config.hidden_size * 4
    assert prepared.session.describe().lookup_table_bytes == tables
    prepared, ctx, _ = _prepare(gpt2, tmp_path)
    # GPT-2's token table is gathered and multiplied by the LM head: only the position table is a lookup
    assert prepared.session.describe().lookup_table_bytes == ctx.model_config.n_positions * ctx.model_config.n_embd * 4


def test_calibration_reads_only_held_out_windows(write_suite, tmp_path, monkeypatch):
    from bench.models.inputs import held_out_windows
    from bench.quality.evaluate import quality_inputs

    seen = []
    real = nncf.quantize

    def spy(model, dataset, **kwargs):
        seen.extend(row for item in dataset.get_inference_data() for row in item["input_ids"])
        return real(model, dataset, **kwargs)

    monkeypatch.setattr(nncf, "quantize", spy)
    for point in _plan(write_suite, variants=["ov-int8"]).points:
        seen.clear()
        prepared, ctx, timed = _prepare(point, tmp_path / "cache")
        assert len(seen) == prepared.applied[0].info["calibration"]["samples"]
        held_out, _ = held_out_windows(ctx.tokenizer, ctx.task, ctx.model_config.vocab_size, ctx.seq_len)
        held_out = {tuple(row.tolist()) for row in held_out}
        assert all(tuple(row.tolist()) in held_out for row in seen), point.model.name
        checked = [*timed["input_ids"], *(row for batch in quality_inputs(
            ctx.tokenizer, ctx.task, ctx.model_config.vocab_size, point.quality).batches for row in batch["input_ids"])]
        assert not any(row.tobytes() in read.tobytes() for row in seen for read in checked), point.model.name


@pytest.mark.parametrize("options, key", [({"performance_hint": "FASTEST"}, "performance_hint"),
                                          ({"num_streams": 0}, "num_streams"), ({"streams": 2}, "streams")])
def test_bad_openvino_options_are_refused_at_plan_time(options, key, write_suite, capsys):
    variant = {"name": "ov-tuned", "backend": "openvino", "backend_options": options}
    assert main(["plan", str(write_suite(tiny_suite(variants=[variant])))]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ov-tuned" in err and key in err and "Traceback" not in err, err


def test_openvino_runs_only_on_devices_openvino_lists(write_suite, monkeypatch):
    plan = _plan(write_suite, models=[TINY_BERT], variants=["ov-fp32"], devices=["cpu", "cuda"])
    assert [p.device for p in plan.points] == ["cpu"]
    (reason,) = [why for label, why in plan.skipped if "cuda" in label]
    assert "openvino does not run on cuda" in reason

    class GpuOnly:
        available_devices = ["GPU.0"]

    monkeypatch.setattr(openvino, "Core", GpuOnly)
    with pytest.raises(Unsupported, match=r"lists no CPU device here \(it lists GPU.0\)"):
        ov_device("cpu")


def test_bf16_on_a_cpu_without_native_bf16_is_unsupported_before_converting(write_suite, tmp_path):
    (point,) = _plan(write_suite, models=[TINY_BERT], variants=["ov-bf16"]).points
    with pytest.raises(Unsupported, match="avx512_bf16"):
        _prepare(point, tmp_path, cpu_flags=frozenset({"avx2", "avx512f"}))
    assert not (tmp_path / "openvino").exists()


def test_a_precision_openvino_compiles_otherwise_is_unsupported_not_recorded_as_asked(write_suite, tmp_path):
    """OpenVINO falls back silently (f16 asked on a CPU without fp16 compiles at bf16 or f32): the record must
    not claim the precision that was asked."""
    if "FP16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU runs f16 natively: OpenVINO honours the hint")
    (point,) = _plan(write_suite, models=[TINY_BERT], variants=["ov-fp32"], quality={"enabled": False}).points
    prepared, ctx, inputs = _prepare(point, tmp_path)
    ctx.precision = "fp16"
    with pytest.raises(Unsupported, match=r"compiled the model at (bf16|fp32) on CPU though fp16 was asked"):
        backends.get("openvino")().open(Path(prepared.session.describe().file), None, inputs, ctx)


def test_a_precision_the_engine_runs_itself_is_recorded_as_its_own_not_torch_autocast():
    """Defect: ov-bf16 records said the precision came from `torch.autocast`, which never ran: OpenVINO takes the
    fp32 model and its inference precision hint. An engine that declares `precision_api` gets the uncast model,
    and the record names the engine's own way."""
    from types import SimpleNamespace

    import torch

    from bench.backends import backends
    from bench.variants.precision import apply_precision

    ctx = SimpleNamespace(precision="bf16", precision_mode="cast", device="cpu",
                          cpu_flags=frozenset({"avx512_bf16"}))
    model = torch.nn.Linear(2, 2)
    kept, info = apply_precision(model, ctx, backends.get("openvino").precision_api)
    assert kept.weight.dtype == torch.float32
    assert info["api"] == "INFERENCE_PRECISION_HINT" and info["precision_mode"] == "engine"
    assert "autocast" not in str(info)
