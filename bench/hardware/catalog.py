"""The chip catalog (bench/hardware/chips/*.yaml, shipped as package data): sourced figures, each with its date.

Rules the schema enforces or the YAML follows:
  * every figure is {value, unit, source, date, note}: a figure without a source (document name and/or
    URL of the vendor datasheet or whitepaper) and a date is rejected; an unsourced or uncertain figure is
    left empty (null), never guessed. Text facts (interconnect, process node) carry a source the same way.
  * dense and sparse are separate fields. NVIDIA datasheets print tensor throughput "with sparsity" (an
    asterisk, 2:4 structured sparsity); the dense value stored in `bf16`, `int8`, ... is half of it and
    the printed figure goes to `*_sparse`. AMD datasheets print both.
  * per precision, the dense field holds the highest dense rate the vendor quotes for a matrix multiply at
    that precision (tensor/matrix cores where quoted, e.g. FP64 Tensor Core, MI250X FP32 matrix); the
    other rate is in the note.
  * figures derived by arithmetic from vendor specs (CPU peaks: cores x FLOP/cycle x clock) say
    "derived" in the source and show the arithmetic in the note.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

CATALOG_DIR = Path(str(resources.files("bench.hardware") / "chips"))

DATE = r"^\d{4}(-\d{2}){0,2}$"


class Figure(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: float = Field(gt=0)
    unit: str
    source: str = Field(min_length=5)
    date: str = Field(pattern=DATE)
    note: Optional[str] = None


class Spec(BaseModel):
    """A sourced text fact (interconnect, process node)."""

    model_config = ConfigDict(extra="forbid")
    value: str = Field(min_length=1)
    source: str = Field(min_length=5)
    date: str = Field(pattern=DATE)
    note: Optional[str] = None


FLOP_FIELDS = ("fp64", "fp32", "tf32", "fp16", "bf16", "fp8", "tf32_sparse", "fp16_sparse", "bf16_sparse",
               "fp8_sparse")
OP_FIELDS = ("int8", "int8_sparse")
FIGURES = FLOP_FIELDS + OP_FIELDS + ("memory_capacity", "memory_bandwidth", "tdp")
UNITS = {**{f: "TFLOPS" for f in FLOP_FIELDS}, **{f: "TOPS" for f in OP_FIELDS},
         "memory_capacity": "GB", "memory_bandwidth": "GB/s", "tdp": "W"}
PRECISIONS = ("fp64", "fp32", "tf32", "fp16", "bf16", "fp8", "int8")


class Chip(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    vendor: str
    kind: str = Field(pattern="^(gpu|npu|cpu)$")
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
    tdp: Optional[Figure] = None
    interconnect: Optional[Spec] = None
    process_node: Optional[Spec] = None
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

    def peak_flops(self, precision: str) -> float | None:
        """Dense peak in FLOP/s (op/s for int8) for a precision, or None when not published."""
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; one of {PRECISIONS}")
        f = getattr(self, precision)
        return f.value * 1e12 if f else None

    def bandwidth(self) -> float | None:
        """Memory bandwidth in bytes/s, or None."""
        return self.memory_bandwidth.value * 1e9 if self.memory_bandwidth else None

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
