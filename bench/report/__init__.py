"""Tables and plots built from result records. Each section is registered and skipped when it has no rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pandas as pd

from ..registry import Registry


@dataclass
class Section:
    title: str
    order: int
    build: Callable[[pd.DataFrame], Optional[pd.DataFrame]]
    note: str = ""
    plot: Optional[Callable[[pd.DataFrame, "Path"], list]] = None  # writes figures, returns their paths


sections: Registry[Section] = Registry("report section", "bench.report")


def section(name: str, title: str, order: int, note: str = "", plot=None):
    """Register a function `frame -> table or None` as a report section (with an optional plot writer)."""

    def decorate(fn):
        sections.register(name)(Section(title=title, order=order, build=fn, note=note, plot=plot))
        return fn

    return decorate


def drop_single_machine(table: pd.DataFrame) -> pd.DataFrame:
    """The machine column says something only when a report holds several machines."""
    if "machine" in table and table["machine"].nunique() <= 1:
        return table.drop(columns=["machine"])
    return table
