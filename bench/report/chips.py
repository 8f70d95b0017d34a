"""The chip catalog side by side, in the order and units the industry reports compare chips: FP64, FP32,
FP16/BF16 and INT8 throughput, memory, bandwidth, host interface, chip-to-chip link, process node, TDP.

Every figure comes from bench/hardware/chips/*.yaml with its source and date (`bench chips --sources`); a
figure that is not the vendor's own is marked with THIRD_PARTY. In a report the table stands beside the
claims section, as the evidence its catalog verdicts rest on, and only where that section is shown.
"""

from __future__ import annotations

import pandas as pd

from ..hardware.catalog import Chip, Figure, load_catalog
from . import section

THIRD_PARTY = "†"
LEGEND = f"{THIRD_PARTY} third-party figure (press, analysts): not the vendor's own; empty: no sourced figure"
# The reports compare NVIDIA and AMD first, then the Chinese makers in the order 003 discusses them.
VENDOR_ORDER = ("NVIDIA", "AMD", "Huawei", "Kunlunxin", "Cambricon", "Biren")
NUMBERS = (("FP64 TFLOPS", "fp64"), ("FP32 TFLOPS", "fp32"))


def _number(fig: Figure | None) -> str:
    if fig is None:
        return ""
    return f"{fig.value:g}" + (THIRD_PARTY if fig.kind != "vendor" else "")


def _half_precision(chip: Chip) -> str:
    """FP16, or BF16 where a vendor quotes only that (Biren)."""
    if chip.fp16 is not None:
        return _number(chip.fp16)
    return f"{_number(chip.bf16)} bf16" if chip.bf16 is not None else ""


def _pcie(chip: Chip) -> str:
    host = chip.host_interface
    if host is None or host.pcie_gen is None:
        return ""
    lanes = f" x{host.lanes}" if host.lanes else ""
    return f"{host.pcie_gen:.1f}{lanes}" + (THIRD_PARTY if host.kind != "vendor" else "")


def _node_nm(chip: Chip) -> str:
    node = chip.process_node
    if node is None or node.nm is None:
        return ""
    return f"{node.nm:g}" + (THIRD_PARTY if node.kind != "vendor" else "")


def _order(chip: Chip) -> tuple:
    rank = VENDOR_ORDER.index(chip.vendor) if chip.vendor in VENDOR_ORDER else len(VENDOR_ORDER)
    return rank, chip.name


def chips_table(chips: list[Chip] | None = None) -> pd.DataFrame:
    """One row per chip; cells are display strings (third-party figures marked) so a CSV keeps the marks."""
    rows = []
    for chip in sorted(load_catalog() if chips is None else chips, key=_order):
        row = {"chip": chip.name, "vendor": chip.vendor}
        row.update({label: _number(getattr(chip, field)) for label, field in NUMBERS})
        row.update({
            "FP16/BF16 TFLOPS": _half_precision(chip),
            "INT8 TOPS": _number(chip.int8),
            "INT8 sparse TOPS": _number(chip.int8_sparse),
            "mem GB": _number(chip.memory_capacity),
            "BW GB/s": _number(chip.memory_bandwidth),
            "PCIe gen": _pcie(chip),
            "link GB/s": _number(chip.interconnect_bandwidth),
            "node nm": _node_nm(chip),
            "TDP W": _number(chip.tdp),
            "third-party": ", ".join(name for name, item in chip.sourced() if item.kind != "vendor"),
        })
        rows.append(row)
    return pd.DataFrame(rows)


def sources_table(chips: list[Chip] | None = None) -> pd.DataFrame:
    """Every filled figure and text fact with its kind, source, date and note: the provenance of the table."""
    rows = []
    for chip in sorted(load_catalog() if chips is None else chips, key=_order):
        for name, item in chip.sourced():
            value = f"{item.value:g} {item.unit}" if isinstance(item, Figure) else item.value
            rows.append({"chip": chip.name, "field": name, "value": value, "kind": item.kind, "date": item.date,
                         "source": item.source, "note": item.note or ""})
    return pd.DataFrame(rows)


@section("chips", "Chips side by side (the catalog behind the claims)", order=95,
         note=f"Dense throughput; INT8 sparse where the vendor prints it; the FP16 column shows BF16 where only that "
              f"is quoted; BW: memory bandwidth; link: chip-to-chip (NVLink, Infinity Fabric, HCCS, MLU-Link, BLink); "
              f"node: as marketed. {LEGEND}. Sources and dates: `bench chips --sources`.")
def chips_beside_claims(df: pd.DataFrame) -> pd.DataFrame | None:
    """Shown where the claims section is: a report on records alone does not need the catalog."""
    from .claims import claims_shown

    return chips_table() if claims_shown(df) else None
