"""The chip catalog (bench/hardware/chips/*.yaml, shipped as package data): sourced figures, each with its date.

Rules the schema enforces or the YAML follows:
  * every figure is {value, unit, source, date, kind, note}: a figure without a source (document name and/or
    URL) and a date is rejected; an unsourced or uncertain figure is left empty (null), never guessed. Text
    facts (interconnect, host interface, process node) carry a source the same way.
  * `kind` says who states the figure: `vendor` (the maker's datasheet, product page, launch announcement or
    conference talk, read directly or as quoted by the press; the source says which) or `third-party`
    (press, analysts, benchmark operators: their own reading, not traceable to a vendor statement). The
    default is `vendor`; tables mark every third-party figure, and `peak_flops()` / `bandwidth()` (the
    projection table's inputs) use vendor figures only unless asked otherwise.
  * dense and sparse are separate fields. NVIDIA datasheets print tensor throughput "with sparsity" (an
    asterisk, 2:4 structured sparsity); the dense value stored in `bf16`, `int8`, ... is half of it and
    the printed figure goes to `*_sparse`. AMD datasheets print both.
  * per precision, the dense field holds the highest dense rate the vendor quotes for a matrix multiply at
    that precision (tensor/matrix cores where quoted, e.g. FP64 Tensor Core, MI250X FP32 matrix); the
    other rate is in the note.
  * `interconnect_bandwidth` is the chip-to-chip link (NVLink, Infinity Fabric, HCCS, MLU-Link, BLink, ...)
    in GB/s as the vendor quotes it (NVIDIA: total bidirectional per GPU); the host link is `host_interface`
    with its PCIe generation.
  * figures derived by arithmetic from vendor specs (CPU peaks: cores x FLOP/cycle x clock) say
    "derived" in the source and show the arithmetic in the note.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Iterator, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

CATALOG_DIR = Path(str(resources.files("bench.hardware") / "chips"))

DATE = r"^\d{4}(-\d{2}){0,2}$"
VENDOR_ONLY = ("vendor",)


class Sourced(BaseModel):
    """Who says it, where and when."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field(min_length=5)
    date: str = Field(pattern=DATE)
    kind: Literal["vendor", "third-party"] = "vendor"
    note: Optional[str] = None


class Figure(Sourced):
    value: float = Field(gt=0)
    unit: str


class Spec(Sourced):
    """A sourced text fact (interconnect, host interface, process node)."""

    value: str = Field(min_length=1)


class HostInterface(Spec):
    """The link to the host; `pcie_gen` is what the PCIe claims compare."""

    pcie_gen: Optional[float] = Field(None, ge=1, le=7)
    lanes: Optional[int] = Field(None, ge=1)


class ProcessNode(Spec):
    """`nm` is the node as marketed (TSMC 4N counts as 4 nm; it is an N5-family process)."""

    nm: Optional[float] = Field(None, gt=0)


FLOP_FIELDS = ("fp64", "fp32", "tf32", "fp16", "bf16", "fp8", "tf32_sparse", "fp16_sparse", "bf16_sparse",
               "fp8_sparse")
OP_FIELDS = ("int8", "int8_sparse")
FIGURES = FLOP_FIELDS + OP_FIELDS + ("memory_capacity", "memory_bandwidth", "interconnect_bandwidth", "tdp")
SPECS = ("interconnect", "host_interface", "process_node")
UNITS = {**{f: "TFLOPS" for f in FLOP_FIELDS}, **{f: "TOPS" for f in OP_FIELDS},
         "memory_capacity": "GB", "memory_bandwidth": "GB/s", "interconnect_bandwidth": "GB/s", "tdp": "W"}
PRECISIONS = ("fp64", "fp32", "tf32", "fp16", "bf16", "fp8", "int8")


class Chip(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    vendor: str
    kind: str = Field(pattern="^(gpu|npu|cpu)$")
    country: str = Field(pattern="^[A-Z]{2}$", description="ISO 3166 code of the designer's home country")
    fp64: Optional[Figure] = None
    fp32: Optional[Figure] = None
    tf32: Optional[Figure] = None
    fp16: Optional[Figure] = None
    bf16: Optional[Figure] = None
    fp8: Optional[Figure] = None
    int8: Optional[Figure] = None
    tf32_sparse: Optional[Figure] = None
    fp16_sparse: Optional[Figure] = None
    bf16_sparse: Optional[Figure] = None
    fp8_sparse: Optional[Figure] = None
    int8_sparse: Optional[Figure] = None
    memory_capacity: Optional[Figure] = None
    memory_bandwidth: Optional[Figure] = None
    interconnect_bandwidth: Optional[Figure] = None
    tdp: Optional[Figure] = None
    interconnect: Optional[Spec] = None
    host_interface: Optional[HostInterface] = None
    process_node: Optional[ProcessNode] = None
    notes: Optional[str] = None

    @model_validator(mode="after")
    def _units_and_sparsity(self) -> "Chip":
        for name, unit in UNITS.items():
            f = getattr(self, name)
            if f is not None and f.unit != unit:
                raise ValueError(f"{name} must be in {unit}, not {f.unit}")
        for name in ("tf32", "fp16", "bf16", "fp8", "int8"):
            dense, sparse = getattr(self, name), getattr(self, f"{name}_sparse")
            if dense is not None and sparse is not None and sparse.value < dense.value:
                raise ValueError(f"{name}_sparse ({sparse.value}) is below the dense {name} ({dense.value}): "
                                 "dense and sparse swapped?")
        return self

    @property
    def accelerator(self) -> bool:
        return self.kind != "cpu"

    def figure(self, name: str, kinds: tuple[str, ...] = ("vendor", "third-party")) -> Figure | None:
        """The figure `name` if it is of one of `kinds`, else None."""
        f = getattr(self, name)
        return f if f is not None and f.kind in kinds else None

    def peak_flops(self, precision: str, kinds: tuple[str, ...] = VENDOR_ONLY) -> float | None:
        """Dense peak in FLOP/s (op/s for int8) for a precision, or None when not published (by `kinds`)."""
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; one of {PRECISIONS}")
        f = self.figure(precision, kinds)
        return f.value * 1e12 if f else None

    def bandwidth(self, kinds: tuple[str, ...] = VENDOR_ONLY) -> float | None:
        """Memory bandwidth in bytes/s, or None."""
        f = self.figure("memory_bandwidth", kinds)
        return f.value * 1e9 if f else None

    def sourced(self) -> Iterator[tuple[str, Sourced]]:
        """Every filled figure and text fact, by field name, in schema order."""
        for name in (*FIGURES, *SPECS):
            item = getattr(self, name)
            if item is not None:
                yield name, item

    def empty_figures(self) -> list[str]:
        return [f for f in FIGURES if getattr(self, f) is None]


def load_catalog(directory: Path = CATALOG_DIR) -> list[Chip]:
    """Every chips/*.yaml as a validated Chip, sorted by file name."""
    chips = []
    for path in sorted(Path(directory).glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        try:
            chips.append(Chip.model_validate(data))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
    return chips
