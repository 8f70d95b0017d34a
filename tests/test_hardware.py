"""Work accounting, roofline arithmetic, the chip catalog, energy readers, peaks and cost."""

from __future__ import annotations

import pytest
import yaml

from bench.hardware import cost, energy, flops, roofline
from bench.hardware.catalog import FIGURES, Chip, load_catalog

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")


@pytest.mark.parametrize("arch, task, seq", [("gpt2", "causal-lm", 128), ("bert", "encoder", 128), ("gpt2", "causal-lm", 1024)])
def test_forward_flops_match_published_formula(arch, task, seq):
    """2 x params x tokens + 4 x layers x seq^2 x hidden (QK^T and AV), plus the LM head for decoders."""
    if arch == "gpt2":
        config = transformers.GPT2Config()  # GPT-2 124M
        model = transformers.GPT2Model(config)
        blocks = [m for m in model.h]
        hidden, layers = config.n_embd, config.n_layer
    else:
        config = transformers.BertConfig()  # BERT-base
        model = transformers.BertModel(config)
        blocks = list(model.encoder.layer)
        hidden, layers = config.hidden_size, config.num_hidden_layers
    params = sum(m.weight.numel() for b in blocks for m in b.modules()
                 if type(m).__name__ in ("Linear", "Conv1D"))
    batch = 2
    expected = 2 * params * batch * seq + 4 * layers * batch * seq * seq * hidden
    if task == "causal-lm":
        expected += 2 * hidden * config.vocab_size * batch * seq
    got = flops.forward_flops(config, task, batch, seq)["total"]
    assert got == pytest.approx(expected, rel=0.02)
    assert params == pytest.approx(85e6, rel=0.02)  # both have ~85M matmul weights in their blocks


def test_flops_cross_check_with_torch_counter():
    """Eager attention, so the counter sees the QK^T and AV matmuls (it attributes nothing to CPU SDPA)."""
    config = transformers.LlamaConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                      num_key_value_heads=2, intermediate_size=128, vocab_size=1000)
    config._attn_implementation = "eager"
    model = transformers.LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 1000, (2, 32))
    counted = flops.count_flops_torch(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    analytic = flops.forward_flops(config, "causal-lm", 2, 32)["total"]
    assert counted == pytest.approx(analytic, rel=0.05)


def test_decode_step_and_bytes():
    config = transformers.GPT2Config()
    step = flops.decode_step_flops(config, batch=1, context_len=100)
    assert step["linear"] == pytest.approx(2 * 85e6, rel=0.02)
    kv = flops.kv_cache_bytes(config, batch=1, context_len=100, dtype_bytes=4)
    assert kv == 2 * 12 * 768 * 100 * 4
    moved = flops.bytes_moved(config, 1, 1, weight_bytes=500_000_000, dtype_bytes=4, decode_context=100)
    assert moved["total"] > 500_000_000 and moved["kv_cache"] == kv
    assert flops.arithmetic_intensity(100.0, 50.0) == 2.0


def test_roofline_arithmetic():
    peak_flops, peak_bw = 100e9, 10e9  # ridge at 10 FLOP/byte
    assert roofline.attainable(1.0, peak_flops, peak_bw) == 10e9
    assert roofline.attainable(100.0, peak_flops, peak_bw) == 100e9
    assert roofline.bound(1.0, peak_flops, peak_bw) == "memory"
    assert roofline.bound(50.0, peak_flops, peak_bw) == "compute"
    eff = roofline.efficiency(flops=5e9, nbytes=5e9, seconds=1.0, peak_flops=peak_flops, peak_bw=peak_bw)
    assert eff["intensity"] == 1.0 and eff["bound"] == "memory"
    assert eff["pct_of_peak_bw"] == pytest.approx(50) and eff["pct_of_roofline"] == pytest.approx(50)
    assert roofline.project(1e12, 1e9, 1e12, 1e10) == pytest.approx(1.0)  # compute-bound: 1 s
    assert roofline.project(1e9, 1e10, 1e12, 1e10) == pytest.approx(1.0)  # memory-bound: 1 s
    assert roofline.project(1e9, 1e9, None, 1e10) is None  # no published peak: no projection


def test_roofline_plot(tmp_path):
    path = tmp_path / "r.png"
    roofline.plot_roofline([{"label": "x", "intensity": 2.0, "achieved_flops": 1e10}], 1e11, 1e10, path)
    assert path.stat().st_size > 1000


def test_catalog_every_figure_has_a_source_and_date():
    chips = load_catalog()
    names = {c.name for c in chips}
    for wanted in ("A100", "A800", "H100 SXM", "H100 PCIe", "H800", "H200", "L40S", "MI250X", "MI300X", "910B", "Xeon"):
        assert any(wanted in n for n in names), wanted
    for chip in chips:
        for field in FIGURES:
            fig = getattr(chip, field)
            if fig is not None:
                assert fig.source and fig.date, (chip.name, field)
    h100 = next(c for c in chips if "H100 SXM" in c.name)
    assert h100.bf16_sparse.value == pytest.approx(2 * h100.bf16.value)  # dense stored as dense


def test_catalog_rejects_unsourced_and_unknown_fields():
    with pytest.raises(ValueError):
        Chip.model_validate({"name": "x", "vendor": "y", "kind": "gpu", "fp32": {"value": 1, "unit": "TFLOPS"}})
    with pytest.raises(ValueError):
        Chip.model_validate({"name": "x", "vendor": "y", "kind": "gpu", "fp33": None})
    with pytest.raises(ValueError):  # wrong unit
        Chip.model_validate({"name": "x", "vendor": "y", "kind": "gpu",
                             "fp32": {"value": 1, "unit": "GB/s", "source": "datasheet", "date": "2024"}})
    assert yaml.safe_load  # catalog files are plain YAML


def test_rapl_unavailable_when_missing_or_unreadable(tmp_path, monkeypatch):
    meter = energy.select_meter("cpu", rapl_root=tmp_path / "nope")
    assert meter.status == "unavailable" and "RAPL" in meter.reason and meter.stop() is None
    domain = tmp_path / "intel-rapl:0"
    domain.mkdir()
    (domain / "energy_uj").write_text("100")

    def deny(self, *a, **k):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(energy.Path, "read_text", deny)
    meter = energy.select_meter("cpu", rapl_root=tmp_path)
    assert meter.status == "unavailable" and "permission" in meter.reason


def test_rapl_reads_and_handles_wraparound(tmp_path):
    domain = tmp_path / "intel-rapl:0"
    domain.mkdir()
    (domain / "energy_uj").write_text("900000")
    (domain / "max_energy_range_uj").write_text("1000000")
    meter = energy.select_meter("cpu", rapl_root=tmp_path)
    assert meter.status == "measured"
    meter.start()
    (domain / "energy_uj").write_text("100000")  # wrapped: 100000 + 1e6 - 900000 = 200000 uJ
    assert meter.stop() == pytest.approx(0.2)


def test_nvml_unavailable_without_gpu():
    meter = energy.select_meter("cuda")
    if meter.status == "measured":
        pytest.skip("an NVIDIA GPU with an energy counter is present")
    assert meter.reason


def test_energy_derivations_and_labelled_estimate():
    d = energy.derived(joules=10.0, inferences=100, tokens=1000, seconds=2.0)
    assert d["joules_per_inference"] == 0.1 and d["joules_per_token"] == 0.01 and d["avg_watts"] == 5.0
    assert d["samples_per_s_per_watt"] == pytest.approx(10.0)
    assert energy.derived(None, 1, 1, 1) == {}
    assert "estimate" in energy.tdp_estimate(300, 1.0, 10)["label"]


def test_cost_per_million():
    assert cost.cost_per_million(3.6, 1000.0) == pytest.approx(1.0)  # $3.6/h = $0.001/s; 1e6 items take 1000 s
    assert cost.cost_per_million(3.6, 0) is None


def test_peaks_run_on_tiny_sizes():
    from bench.hardware.machine import cpu_flags
    from bench.hardware.peaks import measure_peaks

    peaks = measure_peaks("cpu", seconds_per_test=0.01, cpu_flags=cpu_flags(), gemm_size=64, buffer_mib=4)
    assert peaks["gemm"]["fp32"]["value"] > 0 and peaks["bandwidth"]["value"] > 0
    assert set(peaks["gemm"]) | set(peaks["unavailable"]) >= {"fp32", "bf16", "int8"}
