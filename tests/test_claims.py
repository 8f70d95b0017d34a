"""The claims of the industry reports: the claims file, each verdict rule on catalogs and records built
here, the report section and `bench claims`. Every rule is tested on both sides of its threshold."""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import pytest
import yaml
from builders import record

from bench.claims import CLAIMS_FILE, VERDICTS, Assessment, Evidence, checks, from_parts, load_claims
from bench.cli import main
from bench.errors import ConfigError
from bench.hardware.catalog import UNITS, Chip
from bench.records.schema import Provenance
from bench.records.store import append_record
from bench.analysis.frame import records_frame
from bench.report.writer import build_report

SEEDS = Path(os.environ.get("BENCH_SEEDS", "/work/shared/seeds"))
SOURCE = {"source": "a test datasheet", "date": "2024"}


def chip(name: str, vendor: str = "Acme", country: str = "US", third_party: tuple = (), **figures) -> Chip:
    """A catalog entry with the figures given (pcie: generation, nm: process node); `third_party` fields
    are marked so."""
    data = {"name": name, "vendor": vendor, "kind": "gpu", "country": country}
    for field, value in figures.items():
        source = {**SOURCE, "kind": "third-party" if field in third_party else "vendor"}
        if field == "pcie":
            data["host_interface"] = {"value": f"PCIe {value}", "pcie_gen": value, **source}
        elif field == "nm":
            data["process_node"] = {"value": f"{value} nm", "nm": value, **source}
        else:
            data[field] = {"value": value, "unit": UNITS[field], **source}
    return Chip.model_validate(data)


def judge(name: str, params: dict, chips=(), records=(), this_machine=None) -> Assessment:
    spec = checks.get(name)
    frame = records_frame(list(records))
    return spec.run(spec.params.model_validate(params), Evidence(list(chips), frame, this_machine))


# --- the claims file -------------------------------------------------------------------------------------

def test_every_claim_names_a_registered_check_with_valid_params_and_a_report():
    claims = load_claims()
    assert {c.id for c in claims} >= {"fp64", "fp32-int8-midrange", "pcie5", "process-node", "a800-nvlink",
                                      "h800-nvlink", "kunlun-ernie", "compression-cost", "visualglm-memory"}
    for claim in claims:
        assert claim.check in checks
        assert re.fullmatch(r"00\d_[0-9a-f]{16}\.txt", claim.quote.report), claim.id
        assert re.search(r"[\u4e00-\u9fff]", claim.quote.zh) and claim.quote.en, claim.id


@pytest.mark.skipif(not SEEDS.is_dir(), reason="the industry reports (shared/seeds) are not on this machine")
def test_every_quote_stands_in_its_report():
    """Quotes are verbatim, except the pinyin the traditional-character report carries inline: 技術(shù)."""
    for claim in load_claims():
        text = (SEEDS / claim.quote.report).read_text(encoding="utf-8")
        text = re.sub(r"\([a-zāáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜü]+\)", "", text)
        assert claim.quote.zh in text, claim.id


def test_claims_file_is_package_data():
    """Defect class: a YAML beside the code but outside package-data is missing from `pip install .`."""
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    globs = re.search(r'bench = \[(.*?)\]', pyproject).group(1)
    relative = CLAIMS_FILE.relative_to(Path(__file__).parents[1] / "bench").as_posix()
    assert any(Path(relative).match(g.strip(' "')) for g in globs.split(","))


@pytest.mark.parametrize("claim, key", [
    ({"check": "no-such-check"}, "x.check"),
    ({"check": "figure-ratio", "params": {"field": "interconnect_bandwidth", "chip": "A", "reference": "B",
                                          "ratio": 0.5, "colour": "red"}}, "x.params.colour"),
    ({"check": "most-lack-figure", "params": {"field": "fp65", "country": "CN"}}, "x.params.field"),
])
def test_a_bad_claim_is_a_one_line_error_naming_the_key(tmp_path, claim, key):
    quote = {"report": "003_50a9d3122407ade1.txt", "zh": "中文", "en": "gloss"}
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump({"claims": [{"id": "x", "claim": "a claim", "quote": quote, **claim}]}))
    with pytest.raises(ConfigError, match=re.escape(key)) as err:
        load_claims(path)
    assert "\n" not in str(err.value)


def test_parts_make_one_verdict():
    assert from_parts([True, True]) == "holds"
    assert from_parts([False, False]) == "does not hold"
    assert from_parts([True, False]) == "partly"
    assert from_parts([True, None]) == "partly"  # an unknown part never confirms
    assert from_parts([None]) == from_parts([]) == "not checkable here"
    with pytest.raises(ValueError):
        Assessment("probably", "no such verdict")


# --- catalog checks --------------------------------------------------------------------------------------

def test_most_lack_a_figure_counts_the_group_only():
    params = {"field": "fp64", "country": "CN", "share": 0.5}
    cn = [chip("A", country="CN"), chip("B", country="CN"), chip("C", country="CN", fp64=10)]
    foreign = [chip("F", fp64=60)]
    result = judge("most-lack-figure", params, cn + foreign)
    assert result.verdict == "holds" and "2 of 3" in result.reason and "A, B" in result.catalog
    assert judge("most-lack-figure", params, [cn[0], cn[2], chip("D", country="CN", fp64=1)]).verdict == \
        "does not hold"
    assert judge("most-lack-figure", params, foreign).verdict == "not checkable here"


def test_near_foreign_median_reads_each_figure_against_the_foreign_median():
    params = {"fields": ["fp32", "int8"], "country": "CN", "factor": 2}
    foreign = [chip("F1", fp32=10, int8=100), chip("F2", fp32=20, int8=200), chip("F3", fp32=30, int8=300)]
    near = chip("N", country="CN", fp32=15, int8=300)     # 0.75x and 1.5x of the medians 20 and 200
    far = chip("X", country="CN", fp32=50, int8=90)       # 2.5x and 0.45x
    assert judge("near-foreign-median", params, foreign + [near]).verdict == "holds"
    assert judge("near-foreign-median", params, foreign + [far]).verdict == "does not hold"
    mixed = judge("near-foreign-median", params, foreign + [near, far])
    assert mixed.verdict == "partly" and "foreign median 20" in mixed.catalog and "2.50x" in mixed.catalog
    assert judge("near-foreign-median", params, foreign).verdict == "not checkable here"


def test_figure_values_match_each_claimed_value():
    params = {"field": "interconnect_bandwidth", "values": {"A800": 400, "A100": 600}}
    a100, a800 = chip("NVIDIA A100", interconnect_bandwidth=600), chip("NVIDIA A800", interconnect_bandwidth=400)
    assert judge("figure-values", params, [a100, a800]).verdict == "holds"
    wrong = chip("NVIDIA A800", interconnect_bandwidth=600)
    assert judge("figure-values", params, [a100, wrong]).verdict == "partly"
    assert judge("figure-values", params, [a100]).verdict == "partly"  # A800 missing: unknown, not confirmed
    assert judge("figure-values", params, []).verdict == "not checkable here"


def test_figure_ratio_says_when_it_rests_on_third_party_figures():
    params = {"field": "interconnect_bandwidth", "chip": "H800", "reference": "H100", "ratio": 0.5,
              "tolerance": 0.1}
    h100 = chip("NVIDIA H100", interconnect_bandwidth=900)
    half = chip("NVIDIA H800", interconnect_bandwidth=400, third_party=("interconnect_bandwidth",))
    result = judge("figure-ratio", params, [h100, half])
    assert result.verdict == "holds" and "0.44" in result.catalog and "third-party" in result.reason
    assert judge("figure-ratio", params, [h100, chip("NVIDIA H800", interconnect_bandwidth=700)]).verdict == \
        "does not hold"
    assert judge("figure-ratio", params, [h100, chip("NVIDIA H800")]).verdict == "not checkable here"


def test_pcie_leaders_needs_every_part():
    params = {"leaders": ["Biren", "NVIDIA"], "country": "CN"}
    nvidia = chip("H100", vendor="NVIDIA", pcie=5)
    biren = chip("BR100", vendor="Biren", country="CN", pcie=5)
    others = [chip("Y", vendor="Y", country="CN", pcie=4), chip("Z", vendor="Z", country="CN", pcie=4)]
    assert judge("pcie-leaders", params, [nvidia, biren, *others]).verdict == "holds"
    # another maker on PCIe 5.0 before the leaders: 'first' fails, the rest holds
    early = Chip.model_validate({**chip("Early", vendor="E").model_dump(),
                                 "host_interface": {"value": "PCIe 5", "pcie_gen": 5, "source": "a datasheet",
                                                    "date": "2019"}})
    assert judge("pcie-leaders", params, [nvidia, biren, *others, early]).verdict == "partly"
    all_old = [chip("H100", vendor="NVIDIA", pcie=4), chip("BR100", vendor="Biren", country="CN", pcie=4),
               chip("Y", vendor="Y", country="CN", pcie=5), chip("Z", vendor="Z", country="CN", pcie=5)]
    assert judge("pcie-leaders", params, all_old).verdict == "does not hold"


def test_process_nodes_judges_the_leader_and_the_group():
    params = {"leader": "NVIDIA", "leader_nm": 4, "country": "CN", "group_nm": 7}
    cn = [chip("A", vendor="A", country="CN", nm=7), chip("B", vendor="B", country="CN", nm=7)]
    assert judge("process-nodes", params, [chip("H100", vendor="NVIDIA", nm=4), *cn]).verdict == "holds"
    assert judge("process-nodes", params, [chip("A100", vendor="NVIDIA", nm=7), *cn]).verdict == "partly"
    newer = [chip("A", vendor="A", country="CN", nm=5), chip("B", vendor="B", country="CN", nm=5)]
    assert judge("process-nodes", params, [chip("A100", vendor="NVIDIA", nm=7), *newer]).verdict == "does not hold"


def test_a_vendor_statement_is_never_checkable_but_its_peak_context_is_computed():
    params = {"chip": "Kunlun", "reference": "A100", "fields": ["fp16"], "speedup": 3, "stated_by": "Baidu"}
    result = judge("vendor-statement", params, [chip("Kunlun X", fp16=128), chip("A100", fp16=320)])
    assert result.verdict == "not checkable here"
    assert "0.40x" in result.catalog and "7.5x" in result.catalog  # 3 / 0.4


def test_the_shipped_catalog_answers_the_nvlink_claims_with_numbers():
    from bench.claims import assess
    from bench.hardware.catalog import load_catalog

    verdicts = {c.id: a for c, a in assess(load_claims(), Evidence(load_catalog()))}
    assert verdicts["a800-nvlink"].verdict == "holds"
    assert verdicts["h800-nvlink"].verdict == "holds" and "third-party" in verdicts["h800-nvlink"].reason
    assert {a.verdict for a in verdicts.values()} <= set(VERDICTS)


# --- record checks ---------------------------------------------------------------------------------------

def compressed(variant: str, p50: float, kind: str = "quantization", within: bool | None = True,
               parameters: int | None = None, weight_bytes: int | None = None, **kwargs):
    """A transformed point: its transforms' kinds in the provenance, its quality verdict, its sizes."""
    verdicts = {True: "within bound", False: "breaks bound", None: "not meaningful (random weights)"}
    quality = {"verdict": verdicts[within], "within_bound": within, "meaningful": within is not None}
    memory = {"peak_rss_bytes": 2**20, "weight_bytes": weight_bytes or 2**20}
    rec = record(variant=variant, p50=p50, transforms=[{"name": variant}],
                 metrics={"quality": quality, "memory": memory}, **kwargs)
    provenance = Provenance(weights=rec.provenance.weights, parameters=parameters,
                            transforms=[{"name": variant, "kind": kind}])
    return rec.model_copy(update={"provenance": provenance})


COST = {"low": 0.30, "high": 0.50, "kinds": ["quantization", "pruning"]}


def test_cost_cut_holds_at_30_percent_within_the_quality_bound():
    base = record(variant="fp32", p50=100.0)
    result = judge("inference-cost-cut", COST, records=[base, compressed("int8", 60.0)], this_machine="test-machine")
    assert result.verdict == "holds"
    assert "quantization: best 40%" in result.records and "(this machine)" in result.records
    assert judge("inference-cost-cut", COST, records=[base, compressed("int8", 80.0)]).verdict == "does not hold"


def test_cost_cut_ignores_points_that_break_or_lack_the_quality_bound():
    base = record(variant="fp32", p50=100.0)
    fast_but_broken = compressed("int8", 20.0, within=False)
    random = compressed("int4", 20.0, within=None)
    result = judge("inference-cost-cut", COST, records=[base, fast_but_broken, random])
    assert result.verdict == "does not hold" and "no point within the quality bound" in result.records


def test_cost_cut_is_per_machine_and_technique():
    records = [record(variant="fp32", p50=100.0, machine="a"), compressed("int8", 50.0, machine="a"),
               record(variant="fp32", p50=100.0, machine="b"), compressed("int8", 95.0, machine="b"),
               compressed("pruned", 50.0, kind="pruning", machine="b")]
    result = judge("inference-cost-cut", COST, records=records)
    assert result.verdict == "partly"
    assert "a: quantization: best 50%" in result.records and "b: quantization: best 5%" in result.records
    assert "b: pruning: best 50%" in result.records


def test_cost_cut_counts_distilled_students_within_the_perplexity_bound():
    def pair(student_ppl: float):
        teacher = record(model="big", p50=100.0, task="causal-lm",
                         metrics={"quality": {"verdict": "within bound", "perplexity": 20.0}})
        student = record(model="small", teacher="big", p50=50.0, task="causal-lm",
                         metrics={"quality": {"verdict": "within bound", "perplexity": student_ppl}})
        return [teacher, student]

    within = judge("inference-cost-cut", COST, records=pair(20.5))  # ratio 1.025 <= 1.05
    assert within.verdict == "holds" and "distillation: best 50%" in within.records
    assert judge("inference-cost-cut", COST, records=pair(25.0)).verdict == "does not hold"  # ratio 1.25


def test_cost_cut_is_not_checkable_without_compressed_points():
    assert judge("inference-cost-cut", COST).verdict == "not checkable here"
    plain = [record(variant="fp32", p50=100.0), record(variant="bf16", precision="bf16", p50=50.0)]
    result = judge("inference-cost-cut", COST, records=plain)
    assert result.verdict == "not checkable here" and "no quantized, pruned or distilled point" in result.reason


MEMORY = {"model": "VisualGLM-6B", "claimed_gib": 8.7, "quantized_parameters": 6.2e9, "kept_parameters": 1.6e9,
          "kept_bytes_per_parameter": 2, "weight_bits": 4, "parameters_source": "its README"}


def test_memory_projects_the_reports_model_at_the_measured_bytes_per_parameter():
    int4 = compressed("int4", 50.0, parameters=1_000_000, weight_bytes=550_000)  # 0.55 B/param
    result = judge("projected-weight-memory", MEMORY, records=[int4])
    projected = (6.2e9 * 0.55 + 1.6e9 * 2) / 2**30
    assert result.verdict == "holds" and f"{projected:.1f} GiB projected" in result.records
    assert "projection" in result.reason and "lower bound" in result.reason
    tight = judge("projected-weight-memory", {**MEMORY, "claimed_gib": 5.0}, records=[int4])
    assert tight.verdict == "does not hold"


def test_memory_is_not_checkable_without_a_variant_as_small_as_the_claim():
    int8 = compressed("int8", 50.0, parameters=1_000_000, weight_bytes=1_100_000)  # 8.8 bits a weight
    result = judge("projected-weight-memory", MEMORY, records=[int8])
    assert result.verdict == "not checkable here" and "4-bit" in result.reason
    no_count = compressed("int4", 50.0, weight_bytes=550_000)  # no parameter count in the provenance
    assert judge("projected-weight-memory", MEMORY, records=[no_count]).verdict == "not checkable here"
    assert judge("projected-weight-memory", MEMORY).verdict == "not checkable here"


# --- the report section and the command ------------------------------------------------------------------

def test_claims_and_chips_appear_in_a_report_only_where_records_bear_on_a_claim(tmp_path):
    plain = [record(variant="fp32", p50=100.0), record(variant="bf16", precision="bf16", p50=50.0)]
    md, _ = build_report(plain, tmp_path / "plain")
    assert "Claims of the industry reports" not in md and "Chips side by side" not in md
    md, files = build_report([plain[0], compressed("int8", 60.0)], tmp_path / "compressed")
    assert "Claims of the industry reports" in md and "Chips side by side" in md
    assert tmp_path / "compressed" / "claims.csv" in files


def test_bench_claims_reads_results_and_prints_every_claim(tmp_path, capsys, monkeypatch):
    for rec in (record(variant="fp32", p50=100.0), compressed("int8", 60.0)):
        append_record(tmp_path / "results", rec)
    assert main(["claims", str(tmp_path / "results"), "--format", "csv"]) == 0
    rows = {r["claim"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert len(rows) == len(load_claims())
    cost = next(r for c, r in rows.items() if c.startswith("Sparsity"))
    assert cost["verdict"] == "holds" and "best 40%" in cost["records say"]

    monkeypatch.chdir(tmp_path / "results")  # no ./results here: the record-based claims have no evidence
    assert main(["claims", "--format", "csv", "--out", str(tmp_path / "out")]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out.split("wrote ")[0])))
    assert next(r for r in rows if r["claim"].startswith("Sparsity"))["verdict"] == "not checkable here"
    assert (tmp_path / "out" / "claims.md").read_text().count("| ") > len(rows)


def test_bench_claims_on_a_missing_directory_is_a_one_line_error(tmp_path, capsys):
    assert main(["claims", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere" in err
