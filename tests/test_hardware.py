"""Work accounting, roofline arithmetic, the chip catalog, energy readers, peaks and cost.

No timing thresholds anywhere: the peaks test only checks that tiny measurements run and are positive.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from bench.errors import Unsupported
from bench.models.sources import stand_in_tokenizer
from bench.serving.engines import Engine, engines
from bench.hardware import cost, energy, flops, roofline
from bench.hardware.catalog import CATALOG_DIR, FIGURES, Chip, load_catalog

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")


def _meta_model(cls, config):
    """Build on the meta device: parameter shapes without allocating or initializing 124M weights."""
    with torch.device("meta"):
        return cls(config)


# --- FLOPs: published formula ------------------------------------------------------------------------

@pytest.mark.parametrize("seq", [128, 1024])
def test_gpt2_124m_matches_published_2n_plus_attention(seq):
    """GPT-2 124M: 2 x 124M params x tokens + 4 x layers x seq^2 x hidden, within 2%. The token embedding
    is counted in N because GPT-2's LM head is the tied embedding matrix (a 768 x 50257 matmul)."""
    config = transformers.GPT2Config()
    model = _meta_model(transformers.GPT2LMHeadModel, config)
    n_params = sum(p.numel() for p in model.parameters())  # tied: wte counted once
    assert n_params == pytest.approx(124.4e6, rel=0.005)
    batch = 2
    published = 2 * n_params * batch * seq + 4 * config.n_layer * batch * seq**2 * config.n_embd
    got = flops.forward_flops(config, "causal-lm", batch, seq)
    assert got["total"] == pytest.approx(published, rel=0.02)
    assert got["linear"] == 2 * 84_934_656 * batch * seq  # 12 x (4 x 768^2 + 2 x 768 x 3072)
    assert got["attention"] == 4 * 12 * batch * seq**2 * 768
    assert got["lm_head"] == 2 * 768 * 50257 * batch * seq


def test_bert_base_matches_published_2n_plus_attention():
    """BERT-base: 2 x encoder (non-embedding) params x tokens + 4 x layers x seq^2 x hidden, within 2%."""
    config = transformers.BertConfig()
    model = _meta_model(transformers.BertModel, config)
    n_encoder = sum(p.numel() for p in model.encoder.parameters())
    assert n_encoder == pytest.approx(85e6, rel=0.01)
    batch, seq = 4, 128
    published = 2 * n_encoder * batch * seq + 4 * config.num_hidden_layers * batch * seq**2 * config.hidden_size
    got = flops.forward_flops(config, "encoder", batch, seq)
    assert got["lm_head"] == 0
    assert got["total"] == pytest.approx(published, rel=0.02)


def test_llama_gqa_and_gated_mlp_dims():
    config = transformers.LlamaConfig(num_hidden_layers=2, hidden_size=256, num_attention_heads=8,
                                      num_key_value_heads=2, intermediate_size=512, vocab_size=1000)
    d = flops.dims(config)
    assert d.gated_mlp and d.kv_heads == 2 and d.head_dim == 32
    # q, o: 256 x 256 each; k, v: 256 x 64 each; gate, up, down: 256 x 512 each
    assert flops.matmul_params_per_layer(d) == 2 * 256 * 256 + 2 * 256 * 64 + 3 * 256 * 512
    assert flops.kv_cache_bytes(config, batch=1, context_len=10, dtype_bytes=2) == 2 * 2 * 64 * 10 * 2


def test_causal_convention_counts_half_the_pairs():
    config = transformers.GPT2Config()
    full = flops.forward_flops(config, "causal-lm", 1, 512)
    causal = flops.forward_flops(config, "causal-lm", 1, 512, attention="causal")
    assert causal["attention"] == pytest.approx(full["attention"] * (513 / 2) / 512)
    assert causal["linear"] == full["linear"] and "full" in full["convention"]
    with pytest.raises(ValueError):
        flops.forward_flops(config, "causal-lm", 1, 8, attention="sparse")
    with pytest.raises(ValueError):
        flops.forward_flops(config, "seq2seq", 1, 8)


def test_moe_and_incomplete_configs_are_unsupported():
    with pytest.raises(Unsupported):
        flops.dims(transformers.MixtralConfig(num_hidden_layers=1, hidden_size=64, num_attention_heads=4))

    class Empty:
        model_type = "mystery"

    with pytest.raises(Unsupported):
        flops.dims(Empty())


# --- FLOPs: cross-check with torch's FlopCounterMode ---------------------------------------------------

TINY = {
    "gpt2": (lambda: transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=1000, n_positions=64),
             lambda c: transformers.GPT2LMHeadModel(c), "causal-lm"),
    "bert": (lambda: transformers.BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                             intermediate_size=128, vocab_size=1000),
             lambda c: transformers.BertModel(c), "encoder"),
    "llama": (lambda: transformers.LlamaConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                               num_key_value_heads=2, intermediate_size=128, vocab_size=1000),
              lambda c: transformers.LlamaForCausalLM(c), "causal-lm"),
}


@pytest.mark.parametrize("arch", sorted(TINY))
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_flops_cross_check_with_torch_counter(arch, attn):
    """Tolerance 1%: the counter sees exactly the matmuls counted analytically; the only difference is
    BERT's pooler (one hidden x hidden matmul per row, ~0.2% here), which the analytic count leaves out.
    CPU SDPA is counted through the custom formula in count_flops_torch (torch has none for it)."""
    make_config, make_model, task = TINY[arch]
    config = make_config()
    config._attn_implementation = attn
    torch.manual_seed(0)
    model = make_model(config).eval()
    ids = torch.randint(0, 1000, (2, 32))
    counted = flops.count_flops_torch(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    analytic = flops.forward_flops(config, task, 2, 32)["total"]
    assert counted == pytest.approx(analytic, rel=0.01)


def test_decode_step_and_bytes():
    config = transformers.GPT2Config()
    step = flops.decode_step_flops(config, batch=1, context_len=100)
    assert step["linear"] == 2 * 84_934_656
    assert step["attention"] == 4 * 12 * 100 * 768
    kv = flops.kv_cache_bytes(config, batch=1, context_len=100, dtype_bytes=4)
    assert kv == 2 * 12 * 768 * 100 * 4
    moved = flops.bytes_moved(config, 1, 1, weight_bytes=500_000_000, dtype_bytes=4, decode_context=100)
    assert moved["kv_cache"] == kv and moved["weights"] == 500_000_000
    assert moved["total"] == 500_000_000 + moved["activations"] + kv
    # a decode step at batch 1 is memory-bound: ~1 FLOP per 2 bytes of fp32 weights
    assert flops.arithmetic_intensity(step["total"], moved["total"]) < 1
    prefill = flops.bytes_moved(config, 2, 64, 10, 4, kv_cache=True)
    assert prefill["kv_cache"] == flops.kv_cache_bytes(config, 2, 64, 4)
    fused = flops.bytes_moved(config, 2, 64, 10, 4, attention_probs=False)
    assert fused["attention_probs"] == 0 and fused["total"] < prefill["total"]
    assert flops.arithmetic_intensity(100.0, 50.0) == 2.0
    assert flops.weight_bytes_from_config(config, 2, include_lm_head=False) == 2 * 84_934_656


def test_prefill_is_not_charged_the_lm_head_over_every_prompt_token():
    """Defect: a generation's prefill was charged the LM head over every prompt token (25-44% too many FLOPs in
    the efficiency and projection tables); both generation paths compute the last position's logits only."""
    from builders import record

    from bench.analysis.efficiency import phases
    from bench.hardware.work import point_work
    from bench.measurement.stats import summarize
    from bench.scenarios import Workload, scenarios

    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=1000)
    batch, seq = 2, 16
    generate = scenarios.get("generate")()
    declared = generate.work_phases(Workload(batch, seq), generate.Options(new_tokens=4))
    work = point_work(config, "causal-lm", batch, seq, "fp32", declared, weight_bytes=10**6, compute_precision="fp32")
    prefill_work, decode_work = work.phases
    lm_head_per_position = 2 * 64 * 1000
    assert prefill_work.flops == work.flops - lm_head_per_position * batch * (seq - 1)
    assert decode_work.context == seq + 2 and decode_work.tokens == batch
    # a plain forward (single-stream of a causal LM) computes every position's logits: its count stays whole
    single = scenarios.get("single-stream")()
    forward = point_work(config, "causal-lm", batch, seq, "fp32", single.work_phases(Workload(batch, seq), None),
                         10**6, "fp32")
    assert [p.name for p in forward.phases] == ["forward"] and forward.phases[0].flops == work.flops
    assert forward.flops == flops.forward_flops(config, "causal-lm", batch, seq)["total"]
    # TTFT's efficiency row is judged on the prefill's count, TPOT's on the decode step's
    timing = summarize([50.0] * 8)
    generation = {"ttft": timing, "e2e": timing, "tpot": timing, "new_tokens": 4, "prompt_tokens": seq,
                  "throughput": {"samples_per_s": 1.0, "basis": "test"}}
    rec = record(task="causal-lm", scenario="generate", options={"new_tokens": 4}, batch=batch, seq=seq,
                 metrics={"work": work.model_dump(), "generation": generation,
                          "phase_seconds": {"prefill": 0.05, "decode": 0.05}})
    prefill, decode = phases(rec)
    assert prefill["phase"] == "prefill" and prefill["flops"] == prefill_work.flops
    assert decode["phase"] == "decode" and decode["flops"] == decode_work.flops and decode["tokens"] == batch


def test_efficiency_reads_the_phases_a_scenario_declares_not_its_name():
    """The efficiency tables knew single-stream and offline by name (report/efficiency.py) and generate's phases by
    name and default token count (hardware/work.py): a scenario that declares phases gets rows, whatever it is
    called, and one that declares none (cold-start) gets none."""
    from builders import record

    from bench.analysis.efficiency import phases
    from bench.hardware.work import WorkPhase, point_work

    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=1000)
    work = point_work(config, "causal-lm", 1, 8, "fp32", [WorkPhase("decode", context=20)], 10**6, "fp32")
    rec = record(task="causal-lm", scenario="a-scenario-of-my-own", batch=1, seq=8,
                 metrics={"work": work.model_dump(), "phase_seconds": {"decode": 0.01}})
    (decode,) = phases(rec)
    assert (decode["phase"], decode["seconds"], decode["flops"]) == ("decode", 0.01, work.phases[0].flops)
    unmeasured = record(scenario="cold-start", metrics={"work": point_work(config, "causal-lm", 1, 8, "fp32", [],
                                                                           10**6, "fp32").model_dump()})
    assert phases(unmeasured) == []


def _tiny_gpt2(**kwargs):
    config = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=500, n_positions=64,
                                     bos_token_id=0, eos_token_id=0, **kwargs)
    return transformers.GPT2LMHeadModel(config).eval()


def test_a_decoder_streams_its_lm_head_but_only_gathers_from_its_embedding_tables():
    from bench.measurement.size import lookup_table_bytes

    wte, wpe = 500 * 32 * 4, 64 * 32 * 4
    assert lookup_table_bytes(_tiny_gpt2()) == wpe  # the token table is the LM head's weight: read whole
    assert lookup_table_bytes(_tiny_gpt2(tie_word_embeddings=False)) == wte + wpe
    quantized = torch.ao.quantization.quantize_dynamic(_tiny_gpt2(), {torch.nn.Linear}, dtype=torch.qint8)
    assert lookup_table_bytes(quantized) == wte + wpe  # the head has its own int8 copy now


def test_onnx_lookup_tables_are_initializers_only_gather_reads(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from bench.backends.onnxruntime.export import onnx_lookup_table_bytes

    table = numpy_helper.from_array(np.zeros((100, 8), np.float32), "table")
    head = numpy_helper.from_array(np.zeros((8, 100), np.float32), "head")  # the table, transposed for the head
    shared = numpy_helper.from_array(np.zeros((100, 8), np.float32), "shared")  # gathered and multiplied
    nodes = [helper.make_node("Gather", ["table", "ids"], ["e"]), helper.make_node("Gather", ["shared", "ids"], ["f"]),
             helper.make_node("Add", ["e", "f"], ["g"]), helper.make_node("MatMul", ["g", "head"], ["logits"]),
             helper.make_node("MatMul", ["g", "shared_t"], ["h"]),
             helper.make_node("Transpose", ["shared"], ["shared_t"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)],
                              initializer=[table, head, shared])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert onnx_lookup_table_bytes(path) == 100 * 8 * 4  # only `table`


# --- roofline ------------------------------------------------------------------------------------------

def test_roofline_arithmetic():
    peak_flops, peak_bw = 100e9, 10e9  # ridge at 10 FLOP/byte
    assert roofline.ridge_point(peak_flops, peak_bw) == 10
    assert roofline.attainable(1.0, peak_flops, peak_bw) == 10e9
    assert roofline.attainable(100.0, peak_flops, peak_bw) == 100e9
    assert roofline.bound(1.0, peak_flops, peak_bw) == "memory"
    assert roofline.bound(50.0, peak_flops, peak_bw) == "compute"
    eff = roofline.efficiency(flops=5e9, nbytes=5e9, seconds=1.0, peak_flops=peak_flops, peak_bw=peak_bw)
    assert eff["intensity"] == 1.0 and eff["bound"] == "memory"
    assert eff["pct_of_peak_bw"] == pytest.approx(50) and eff["pct_of_roofline"] == pytest.approx(50)
    assert eff["pct_of_peak_flops"] == pytest.approx(5)
    rates = roofline.efficiency_rates(achieved_flops=80e9, achieved_bw=4e9, peak_flops=peak_flops, peak_bw=peak_bw)
    assert rates["intensity"] == 20 and rates["bound"] == "compute"
    assert rates["pct_of_peak_flops"] == pytest.approx(80) and rates["pct_of_roofline"] == pytest.approx(80)
    assert rates["pct_of_peak_bw"] == pytest.approx(40)


def test_roofline_projection_is_labelled():
    assert roofline.project(1e12, 1e9, 1e12, 1e10) == pytest.approx(1.0)  # compute-bound: 1 s
    assert roofline.project(1e9, 1e10, 1e12, 1e10) == pytest.approx(1.0)  # memory-bound: 1 s
    assert roofline.project(1e9, 1e9, None, 1e10) is None  # no published peak: no projection
    p = roofline.projection(1e9, 1e10, 1e12, 1e10, items=8, chip="X")
    assert p["kind"] == "projected" and p["bound"] == "memory" and p["items_per_s"] == pytest.approx(8)
    assert roofline.projection(1, 1, None, None)["seconds"] is None


@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_roofline_plot_shows_points_ceilings_and_labels(tmp_path, suffix, saved_figures):
    from conftest import figure_points, figure_texts

    path = tmp_path / f"r.{suffix}"
    points = [{"label": "gpt2 decode", "intensity": 0.5, "achieved_flops": 4e9},
              {"label": "bert b32", "intensity": 50.0, "achieved_flops": 1e11}]
    roofline.plot_roofline(points, {"fp32": 1.8e11, "bf16": 4e11}, 1.2e10, path)
    (fig, written), = saved_figures
    assert written == path and path.stat().st_size > 1000
    np.testing.assert_allclose(figure_points(fig), [(0.5, 4.0), (50.0, 100.0)])  # GFLOP/s on the y axis
    texts = figure_texts(fig)
    assert {"gpt2 decode", "bert b32"} <= set(texts)
    assert any(t.startswith("fp32: 180 GFLOP/s") for t in texts) and any("12.0 GB/s" in t for t in texts)
    roofline.plot_roofline([], 1e11, 1e10, tmp_path / f"empty.{suffix}")  # no points: ceilings only
    assert figure_points(saved_figures[-1][0]) == []


# --- catalog -------------------------------------------------------------------------------------------

def test_catalog_loads_every_file_and_every_figure_has_a_source_and_date():
    files = sorted(CATALOG_DIR.glob("*.yaml"))
    chips = load_catalog()
    assert len(chips) == len(files) >= 11
    names = {c.name for c in chips}
    for wanted in ("A100", "A800", "H100 SXM", "H100 PCIe", "H800", "H200", "L40S", "MI250X", "MI300X", "910B", "Xeon"):
        assert any(wanted in n for n in names), wanted
    for chip in chips:
        for field in FIGURES:
            fig = getattr(chip, field)
            if fig is not None:
                assert len(fig.source) >= 5 and fig.date, (chip.name, field)
        for spec in (chip.interconnect, chip.process_node):
            if spec is not None:
                assert spec.source and spec.date, chip.name
        if chip.empty_figures() == list(FIGURES):
            assert chip.notes, f"{chip.name}: all figures empty without a note saying why"


def test_catalog_dense_is_stored_as_dense():
    """NVIDIA prints sparse tensor TFLOPS with an asterisk: the dense field is half of it. 2% tolerance:
    the L40S datasheet prints both, and its 362.05 dense vs 733 sparse FP16/BF16 is not an exact 2x."""
    chips = {c.name: c for c in load_catalog()}
    for chip in chips.values():
        if chip.vendor != "NVIDIA":
            continue
        for name in ("tf32", "fp16", "bf16", "fp8", "int8"):
            dense, sparse = getattr(chip, name), getattr(chip, f"{name}_sparse")
            if dense and sparse:
                assert sparse.value == pytest.approx(2 * dense.value, rel=0.02), (chip.name, name)
    h100 = next(c for c in chips.values() if "H100 SXM" in c.name)
    assert h100.peak_flops("bf16") == pytest.approx(989.5e12) and h100.bandwidth() == pytest.approx(3.35e12)


def test_catalog_rejects_unsourced_unknown_and_wrong_units(tmp_path):
    base = {"name": "x", "vendor": "y", "kind": "gpu", "country": "US"}
    Chip.model_validate(base)  # the base is valid: each case below fails for its own reason
    with pytest.raises(ValueError):  # no source, no date
        Chip.model_validate({**base, "fp32": {"value": 1, "unit": "TFLOPS"}})
    with pytest.raises(ValueError):  # unknown field
        Chip.model_validate({**base, "fp33": None})
    with pytest.raises(ValueError):  # unknown key inside a figure
        Chip.model_validate({**base, "fp32": {"value": 1, "unit": "TFLOPS", "source": "datasheet",
                                               "date": "2024", "url": "x"}})
    with pytest.raises(ValueError):  # wrong unit
        Chip.model_validate({**base, "fp32": {"value": 1, "unit": "GB/s", "source": "datasheet", "date": "2024"}})
    with pytest.raises(ValueError):  # bad date
        Chip.model_validate({**base, "fp32": {"value": 1, "unit": "TFLOPS", "source": "datasheet", "date": "soon"}})
    with pytest.raises(ValueError):  # unsourced text fact
        Chip.model_validate({**base, "interconnect": {"value": "NVLink"}})
    fig = {"unit": "TFLOPS", "source": "datasheet", "date": "2024"}
    with pytest.raises(ValueError):  # sparse below dense: swapped
        Chip.model_validate({**base, "bf16": {**fig, "value": 10}, "bf16_sparse": {**fig, "value": 5}})
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**base, "colour": "green"}))
    with pytest.raises(ValueError, match="bad.yaml"):
        load_catalog(tmp_path)


# --- energy --------------------------------------------------------------------------------------------

def _rapl_domain(root: Path, name: str, energy_uj: int, max_range: int | None = 1_000_000, label="package-0"):
    d = root / name
    d.mkdir(parents=True)
    (d / "energy_uj").write_text(str(energy_uj))
    (d / "name").write_text(label)
    if max_range is not None:
        (d / "max_energy_range_uj").write_text(str(max_range))
    return d


def test_rapl_unavailable_when_missing(tmp_path):
    meter = energy.select_meter("cpu", rapl_root=tmp_path / "nope")
    assert meter.status == "unavailable" and "RAPL" in meter.reason and meter.stop() is None
    meter.start()  # harmless on an unavailable meter
    empty = energy.select_meter("cpu", rapl_root=tmp_path)  # exists, no intel-rapl:N inside
    assert empty.status == "unavailable" and "intel-rapl" in empty.reason


def test_rapl_unavailable_when_unreadable(tmp_path, monkeypatch):
    _rapl_domain(tmp_path, "intel-rapl:0", 100)
    real = Path.read_text

    def deny(self, *a, **k):
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(energy.Path, "read_text", deny)
    meter = energy.select_meter("cpu", rapl_root=tmp_path)
    assert meter.status == "unavailable" and "permission" in meter.reason and meter.stop() is None
    assert meter.describe()["status"] == "unavailable"


def test_rapl_reads_sums_packages_and_handles_wraparound(tmp_path):
    d0 = _rapl_domain(tmp_path, "intel-rapl:0", 900_000)
    d1 = _rapl_domain(tmp_path, "intel-rapl:1", 5_000)
    _rapl_domain(tmp_path, "intel-rapl:0:0", 1, label="core")  # core sub-domain: inside package 0, not added
    meter = energy.select_meter("cpu", rapl_root=tmp_path)
    assert meter.status == "measured" and [d.name for d in meter.domains] == ["intel-rapl:0", "intel-rapl:1"]
    assert meter.covers == ["package"] and meter.describe()["covers"] == ["package"]
    meter.start()
    (d0 / "energy_uj").write_text("100000")  # wrapped: 1e6 - 900000 + 100000 = 200000 uJ
    (d1 / "energy_uj").write_text("305000")  # 300000 uJ
    assert meter.stop() == pytest.approx(0.5)


def test_rapl_reads_dram_domains_and_psys_without_double_counting(tmp_path):
    """Defect: only the package domains were read, on the assumption that DRAM is inside them; Intel documents
    DRAM as a domain of its own. psys covers the platform (packages and DRAM), so it is read alone."""
    server = tmp_path / "server"
    packages = [_rapl_domain(server, f"intel-rapl:{n}", 1_000) for n in (0, 1)]
    drams = [_rapl_domain(server, f"intel-rapl:{n}:0", 60_000, max_range=65_000, label="dram") for n in (0, 1)]
    _rapl_domain(server, "intel-rapl:0:1", 5, label="core")  # inside the package: not added
    meter = energy.select_meter("cpu", rapl_root=server)
    assert meter.covers == ["package", "dram"] and "dram" in meter.source
    meter.start()
    for d in packages:
        (d / "energy_uj").write_text("101000")  # 100000 uJ each
    (drams[0] / "energy_uj").write_text("70000")  # 10000 uJ
    (drams[1] / "energy_uj").write_text("5000")  # wrapped at its own range: 65000 - 60000 + 5000 = 10000 uJ
    assert meter.stop() == 0.22

    client = tmp_path / "client"
    package = _rapl_domain(client, "intel-rapl:0", 0)
    dram = _rapl_domain(client, "intel-rapl:0:0", 0, label="dram")
    psys = _rapl_domain(client, "intel-rapl:1", 0, label="psys")
    meter = energy.select_meter("cpu", rapl_root=client)
    assert meter.covers == ["psys"] and [d.name for d in meter.domains] == ["intel-rapl:1"]
    meter.start()
    for d, uj in ((package, 300_000), (dram, 50_000), (psys, 400_000)):
        (d / "energy_uj").write_text(str(uj))
    assert meter.stop() == 0.4  # the platform's figure alone: package and DRAM are inside it


def test_rapl_wrap_without_range_is_not_guessed(tmp_path):
    assert energy.rapl_delta_uj(10, 30, None) == 20
    assert energy.rapl_delta_uj(900, 100, 1000) == 200
    assert energy.rapl_delta_uj(900, 100, None) is None
    d = _rapl_domain(tmp_path, "intel-rapl:0", 900, max_range=None)
    meter = energy.select_meter("cpu", rapl_root=tmp_path)
    meter.start()
    (d / "energy_uj").write_text("100")
    assert meter.stop() is None and "wrapped" in meter.reason


def test_rapl_stop_before_start_is_an_error(tmp_path):
    _rapl_domain(tmp_path, "intel-rapl:0", 1)
    with pytest.raises(RuntimeError):
        energy.select_meter("cpu", rapl_root=tmp_path).stop()


def test_nvml_unavailable_without_gpu_or_library(monkeypatch):
    meter = energy.select_meter("cuda")
    if meter.status != "measured":
        # the reason names what is missing: the library, the driver or the device
        assert any(word in meter.reason for word in ("nvidia-ml-py", "NVML", "Driver", "driver", "GPU")), meter.reason
        assert meter.stop() is None
    import builtins

    real_import = builtins.__import__

    def no_pynvml(name, *a, **k):
        if name == "pynvml":
            raise ImportError("no pynvml")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_pynvml)
    meter = energy.select_meter("cuda")
    assert meter.status == "unavailable" and "nvidia-ml-py" in meter.reason


def test_energy_derivations_and_labelled_estimate():
    d = energy.derived(joules=10.0, inferences=100, tokens=1000, seconds=2.0)
    assert d["joules_per_inference"] == 0.1 and d["joules_per_token"] == 0.01 and d["avg_watts"] == 5.0
    assert d["samples_per_s_per_watt"] == pytest.approx(10.0)
    assert energy.derived(None, 1, 1, 1) == {}
    assert energy.joules_per_inference(10.0, 100) == 0.1 and energy.joules_per_inference(None, 100) is None
    assert energy.joules_per_token(10.0, 1000) == 0.01
    assert energy.samples_per_s_per_watt(100, 10.0) == 10.0
    est = energy.tdp_estimate(300, 1.0, 10, tokens=100, utilization=0.5)
    assert "estimate" in est["label"] and est["status"] == "estimate" and est["joules_per_inference"] == 15.0


class _MeteredSystem:
    """A fake system under test on a fake meter: every sample it serves costs 0.5 J and 0.25 s of the meter's
    clock (powers of two, so every figure below is exact), whether warm-up, timed traffic or peak probe."""

    def __init__(self, batch: int):
        self.batch, self.joules, self.seconds = batch, 0.0, 0.0

    def run_rows(self, rows: int) -> None:
        self.joules += 0.5 * rows
        self.seconds += 0.25 * rows

    def run(self) -> None:
        self.run_rows(self.batch)

    def generate(self, new_tokens, on_token, rows=None) -> None:
        for i in range(new_tokens):
            on_token(i)
        self.run_rows(rows or self.batch)


class _MeteredServing:
    """A system that takes requests over a _MeteredSystem: each request is one sample, served within `submit` (a
    test's shortcut: a real system returns at once)."""

    engine, max_in_flight = "fake-metered", None

    def __init__(self, system: _MeteredSystem):
        self.system = system

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def describe(self) -> dict:
        return {"implementation": "tests.test_hardware._MeteredServing"}

    def submit(self, request, on_token, on_done) -> None:
        from bench.serving.requests import Completion

        self.system.run_rows(1)
        on_done(Completion(0))


class _MeteredEngine(Engine):
    name = "fake-metered"

    def build(self, session, settings):
        return _MeteredServing(session)



class _FakeMeter(energy.EnergyMeter):
    status, source, covers = "measured", "fake meter", ["package"]

    def __init__(self, system: _MeteredSystem):
        self.system = system

    def start(self) -> None:
        self._start = self.system.joules

    def stop(self) -> float:
        return self.system.joules - self._start


@pytest.mark.parametrize("scenario, options, batch, joules_per_token, counted", [
    ("server", {"rate_qps": 400, "engine": "fake-metered", "capacity": True, "capacity_range": [100, 300],
                "capacity_probes": 2}, 8, 0.5 / 16, "input tokens processed"),
    ("generate", {"new_tokens": 4}, 2, 0.5 / 4, "output tokens generated"),
    ("single-stream", {}, 2, 0.5 / 16, "input tokens processed"),
])
def test_energy_divides_the_timed_window_by_what_it_served(scenario, options, batch, joules_per_token, counted,
                                                          monkeypatch):
    """Defect: the server's J/inference divided by requests x batch size (8x too low at batch 8: each request is
    one sample), average watts divided energy that included warm-up and every peak probe by the timed window
    only, and generate's J/token divided by prompt tokens, not generated ones."""
    from bench.measurement.timing import LoopSettings
    from bench.measurement.trackers import EnergyTracker
    from bench.scenarios import Workload, scenarios

    engines.names()
    monkeypatch.setitem(engines._items, _MeteredEngine.name, _MeteredEngine)
    system = _MeteredSystem(batch)
    tracker = EnergyTracker("cpu", meter=_FakeMeter(system), clock=lambda: system.seconds)
    settings = LoopSettings(warmup_iterations=3, warmup_s=0.0, min_iterations=8, min_duration_s=0.0, window=tracker)
    cls = scenarios.get(scenario)
    with tracker:
        workload = Workload(batch, 16, stand_in_tokenizer()[0], "encoder" if scenario == "server" else "causal-lm")
        result = cls().run(system, workload, settings, cls.Options.model_validate(options))
    e = tracker.result(result.loop)
    samples = result.serving.requests if scenario == "server" else result.loop.queries * batch
    assert system.joules > samples * 0.5  # warm-up (and the server's peak probe) served samples outside the window
    assert e.inferences == samples and e.joules == samples * 0.5 and e.window_s == samples * 0.25
    assert e.joules_per_inference == 0.5 and e.avg_watts == 2.0 and e.samples_per_s_per_watt == 2.0
    assert e.joules_per_token == joules_per_token and e.tokens_counted == counted
    assert e.covers == ["package"] and "timed traffic only" in e.window

    quiet = EnergyTracker("cpu", meter=_FakeMeter(system), clock=lambda: system.seconds)
    with quiet:  # traffic that announces no window: the whole scenario, and no per-inference figure
        system.run()
    whole = quiet.result(result.loop)
    assert whole.joules == 0.5 * batch and whole.avg_watts == 2.0 and whole.joules_per_inference is None
    assert "whole scenario" in whole.window


# --- cost ----------------------------------------------------------------------------------------------

def test_cost_per_million():
    assert cost.cost_per_million(3.6, 1000.0) == pytest.approx(1.0)  # $3.6/h = $0.001/s; 1e6 items take 1000 s
    assert cost.cost_per_million(2.0, 22.0) == pytest.approx(2.0 / 3600 / 22 * 1e6)  # tokens/s works the same
    assert cost.cost_per_million(3.6, 0) is None
    with pytest.raises(ValueError):
        cost.cost_per_million(-1.0, 10.0)


# --- peaks ---------------------------------------------------------------------------------------------

def test_peaks_run_on_tiny_sizes():
    from bench.hardware.machine import cpu_flags
    from bench.hardware.peaks import measure_peaks

    peaks = measure_peaks("cpu", seconds_per_test=0.01, cpu_flags=cpu_flags(), gemm_size=64, buffer_mib=4,
                          threads=1)
    assert peaks["threads"] == 1
    assert peaks["gemm"]["fp32"]["value"] > 0 and peaks["bandwidth"]["value"] > 0
    assert set(peaks["gemm"]) | set(peaks["unavailable"]) >= {"fp32", "bf16", "int8"}
    for fig in [*peaks["gemm"].values(), peaks["bandwidth"]]:
        assert {"value", "unit", "method", "repeats"} <= set(fig) and fig["repeats"] >= 3
    assert peaks["gemm"]["fp32"]["size"] == 64 and peaks["bandwidth"]["buffer_mib"] == 4
    assert "read + write" in peaks["bandwidth"]["counts"]


def test_peaks_flag_gate_and_cuda_skip(monkeypatch):
    from bench.hardware import peaks as peaks_mod

    p = peaks_mod.measure_peaks("cpu", seconds_per_test=0.0, cpu_flags=frozenset(), gemm_size=32, buffer_mib=1)
    assert "bf16" in p["unavailable"] and "avx512_bf16" in p["unavailable"]["bf16"]
    if not torch.cuda.is_available():
        with pytest.raises(Unsupported):
            peaks_mod.measure_peaks("cuda")


def test_load_or_measure_peaks_caches_per_machine(tmp_path, monkeypatch):
    from bench.hardware import peaks as peaks_mod

    calls = []

    def fake(device, **kw):
        calls.append(device)
        if device == "cuda":
            raise Unsupported("CUDA is not available on this machine")
        return {"device": device, "gemm": {"fp32": {"value": 1.0}}, "bandwidth": {"value": 2.0}}

    monkeypatch.setattr(peaks_mod, "measure_peaks", fake)
    path = tmp_path / "m1" / "peaks.json"
    first = peaks_mod.load_or_measure_peaks(path, "m1")
    assert first["devices"]["cpu"]["gemm"]["fp32"]["value"] == 1.0 and "cuda" in first["unavailable"]
    assert json.loads(path.read_text())["machine_id"] == "m1"
    n = len(calls)
    assert peaks_mod.load_or_measure_peaks(path, "m1") == first and len(calls) == n  # cached
    peaks_mod.load_or_measure_peaks(path, "m2")  # another machine: measured again
    peaks_mod.load_or_measure_peaks(path, "m2", force=True)
    assert len(calls) == n + 4
