"""Tables and plots built from result records. Each section is registered and skipped when it has no rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import pandas as pd

from ..registry import Registry


@dataclass
class Section:
    title: str
    order: int
    build: Callable[[pd.DataFrame], Optional[pd.DataFrame]]
    note: str = ""


sections: Registry[Section] = Registry("report section", "bench.report")


def section(name: str, title: str, order: int, note: str = ""):
    """Register a function `frame -> table or None` as a report section."""

    def decorate(fn):
        sections.register(name)(Section(title=title, order=order, build=fn, note=note))
        return fn

    return decorate
