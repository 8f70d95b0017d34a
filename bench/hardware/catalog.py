"""The chip catalog (configs/hardware/*.yaml): vendor figures, each with its source and date.

An unsourced figure is left empty (null), never guessed. Dense and sparse figures are separate fields:
NVIDIA datasheets print sparse tensor throughput with an asterisk; the dense value is half of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

CATALOG_DIR = Path(__file__).resolve().parents[2] / "configs" / "hardware"


class Figure(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: float = Field(gt=0)
    unit: str
    source: str = Field(min_length=5)
    date: str = Field(pattern=r"^\d{4}(-\d{2}){0,2}$")
    note: Optional[str] = None


FIGURES = ("fp64", "fp32", "tf32", "fp16", "bf16", "int8", "tf32_sparse", "fp16_sparse", "bf16_sparse",
           "int8_sparse", "memory_capacity", "memory_bandwidth", "tdp")


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
    int8: Optional[Figure] = None
    tf32_sparse: Optional[Figure] = None
    fp16_sparse: Optional[Figure] = None
    bf16_sparse: Optional[Figure] = None
    int8_sparse: Optional[Figure] = None
    memory_capacity: Optional[Figure] = None
    memory_bandwidth: Optional[Figure] = None
    tdp: Optional[Figure] = None
    interconnect: Optional[str] = None
    process_node: Optional[str] = None
    notes: Optional[str] = None

    @model_validator(mode="after")
    def _units(self) -> "Chip":
        for name in ("fp64", "fp32", "tf32", "fp16", "bf16", "tf32_sparse", "fp16_sparse", "bf16_sparse"):
            f = getattr(self, name)
            if f is not None and f.unit != "TFLOPS":
                raise ValueError(f"{name} must be in TFLOPS")
        for name in ("int8", "int8_sparse"):
            f = getattr(self, name)
            if f is not None and f.unit != "TOPS":
                raise ValueError(f"{name} must be in TOPS")
        checks = {"memory_bandwidth": "GB/s", "memory_capacity": "GB", "tdp": "W"}
        for name, unit in checks.items():
            f = getattr(self, name)
            if f is not None and f.unit != unit:
                raise ValueError(f"{name} must be in {unit}")
        return self

    def peak_flops(self, precision: str) -> float | None:
        """Dense peak in FLOP/s (or op/s for int8) for a precision, or None when not published."""
        f = getattr(self, {"fp32": "fp32", "bf16": "bf16", "fp16": "fp16", "int8": "int8", "tf32": "tf32"}[precision])
        return f.value * 1e12 if f else None

    def bandwidth(self) -> float | None:
        return self.memory_bandwidth.value * 1e9 if self.memory_bandwidth else None


def load_catalog(directory: Path = CATALOG_DIR) -> list[Chip]:
    chips = []
    for path in sorted(Path(directory).glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        chips.append(Chip.model_validate(data))
    return chips
