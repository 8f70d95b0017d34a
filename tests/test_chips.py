"""The chip catalog behind the claims: every figure sourced, with its kind and the right unit; the chips
table in the reports' order and units, marking every third-party figure; `bench chips`."""

from __future__ import annotations

import csv
import io

import pytest
import yaml

from bench.cli import main
from bench.hardware.catalog import FIGURES, SPECS, UNITS, Chip, load_catalog
from bench.report.chips import THIRD_PARTY, chips_table, sources_table

REPORT_CHIPS = ("A100", "A800", "H100 SXM", "H800", "GH200", "MI100", "Ascend 910", "Ascend 910B", "Kunlunxin",
                "Cambricon", "Biren")
BASE = {"name": "Test chip", "vendor": "Acme", "kind": "npu", "country": "CN"}
VENDOR = {"source": "a test datasheet", "date": "2024"}


def by_name(pattern: str) -> Chip:
    (found,) = [c for c in load_catalog() if pattern in c.name]
    return found


def test_the_catalog_holds_every_chip_the_reports_compare():
    names = [c.name for c in load_catalog()]
    for wanted in REPORT_CHIPS:
        assert any(wanted in n for n in names), wanted


def test_every_figure_and_fact_is_sourced_dated_and_of_a_known_kind():
    for chip in load_catalog():
        for name, item in chip.sourced():
            assert len(item.source) >= 5 and item.date and item.kind in ("vendor", "third-party"), (chip.name, name)
            if name in UNITS:
                assert item.unit == UNITS[name], (chip.name, name)


def test_the_nvlink_claims_have_numbers_with_sources():
    a100, a800 = by_name("A100"), by_name("A800")
    h100, h800 = by_name("H100 SXM"), by_name("H800")
    assert (a100.interconnect_bandwidth.value, a800.interconnect_bandwidth.value) == (600, 400)
    assert h100.interconnect_bandwidth.value == 900
    assert h800.interconnect_bandwidth.kind == "third-party" and "philisun" in h800.interconnect_bandwidth.source


def test_pcie_generation_and_process_node_are_numbers_where_published():
    assert by_name("Biren").host_interface.pcie_gen == 5 and by_name("Cambricon").host_interface.pcie_gen == 4
    assert by_name("H100 SXM").process_node.nm == 4 and by_name("Kunlunxin").process_node.nm == 7


@pytest.mark.parametrize("bad", [
    {"interconnect_bandwidth": {"value": 400, "unit": "GB", **VENDOR}},          # GB, not GB/s
    {"fp16": {"value": 100, "unit": "TFLOPS", "kind": "rumour", **VENDOR}},      # unknown kind
    {"host_interface": {"value": "PCIe 9", "pcie_gen": 9, **VENDOR}},            # no such generation
    {"process_node": {"value": "7 nm", "nm": 7}},                                  # unsourced fact
    {"country": "China"},                                                         # not an ISO code
])
def test_the_schema_rejects_wrong_units_kinds_and_unsourced_facts(bad):
    Chip.model_validate(BASE)
    with pytest.raises(ValueError):
        Chip.model_validate({**BASE, **bad})


def test_projections_use_vendor_figures_unless_asked():
    """The projection table says it uses vendor figures: a third-party peak must not slip into it."""
    chip = Chip.model_validate({**BASE, "fp16": {"value": 280, "unit": "TFLOPS", "kind": "third-party", **VENDOR},
                                "memory_bandwidth": {"value": 1600, "unit": "GB/s", **VENDOR}})
    assert chip.peak_flops("fp16") is None and chip.bandwidth() == pytest.approx(1.6e12)
    assert chip.peak_flops("fp16", kinds=("vendor", "third-party")) == pytest.approx(280e12)


def test_the_table_marks_third_party_figures_and_only_them(tmp_path):
    chip = Chip.model_validate({**BASE, "fp16": {"value": 280, "unit": "TFLOPS", "kind": "third-party", **VENDOR},
                                "int8": {"value": 512, "unit": "TOPS", **VENDOR},
                                "host_interface": {"value": "PCIe 4.0 x16", "pcie_gen": 4, "lanes": 16, **VENDOR}})
    (row,) = chips_table([chip]).to_dict("records")
    assert row["FP16/BF16 TFLOPS"] == f"280{THIRD_PARTY}" and row["INT8 TOPS"] == "512"
    assert row["PCIe gen"] == "4.0 x16" and row["third-party"] == "fp16" and row["FP64 TFLOPS"] == ""


def test_the_table_follows_the_reports_order_and_units():
    table = chips_table()
    assert list(table.columns[:7]) == ["chip", "vendor", "FP64 TFLOPS", "FP32 TFLOPS", "FP16/BF16 TFLOPS",
                                      "INT8 TOPS", "INT8 sparse TOPS"]
    vendors = list(dict.fromkeys(table["vendor"]))
    assert vendors[:6] == ["NVIDIA", "AMD", "Huawei", "Kunlunxin", "Cambricon", "Biren"]
    a800 = table[table["chip"].str.contains("A800")].iloc[0]
    assert a800["link GB/s"] == "400" and a800["INT8 sparse TOPS"] == "1248"
    ascend = table[table["chip"] == "Huawei Ascend 910B"].iloc[0]
    assert ascend["FP16/BF16 TFLOPS"].endswith(THIRD_PARTY) and "fp16" in ascend["third-party"]


def test_sources_list_every_filled_figure_once():
    chips = load_catalog()
    sources = sources_table(chips)
    assert len(sources) == sum(1 for c in chips for _ in c.sourced())
    assert set(sources["field"]) <= set(FIGURES) | set(SPECS)
    assert (sources[sources["kind"] == "third-party"]["chip"].isin(
        [c.name for c in chips if any(i.kind == "third-party" for _, i in c.sourced())])).all()


def test_bench_chips_prints_the_catalog_in_every_format(tmp_path, capsys):
    assert main(["chips", "--format", "csv", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO(out.split("wrote ")[0])))
    assert len(rows) == len(load_catalog())
    assert any(THIRD_PARTY in v for r in rows for v in r.values())
    assert "third-party" in (tmp_path / "chips.md").read_text(encoding="utf-8")

    assert main(["chips"]) == 0  # rich, for a terminal: the mark and its legend
    out = capsys.readouterr().out
    assert "Kunlunxin" in out and THIRD_PARTY in out and "third-party figure" in out

    assert main(["chips", "--sources", "--format", "markdown"]) == 0
    assert "Hot Chips 34" in capsys.readouterr().out


def test_a_catalog_file_with_a_bad_kind_names_the_file(tmp_path):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**BASE, "fp16": {"value": 1, "unit": "TFLOPS",
                                                                          "kind": "guess", **VENDOR}}))
    with pytest.raises(ValueError, match="bad.yaml"):
        load_catalog(tmp_path)
