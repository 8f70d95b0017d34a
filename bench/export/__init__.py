"""Records in other tools' formats: one module per format, registered by name (`bench export --format NAME`).

A format reads the report's frame (one row per machine and point, bench/analysis/frame.py: speedups with their
intervals, size ratios, quality) and the records behind it, and writes one document per machine: the tools
these formats feed keep one machine's description per file.
"""

from __future__ import annotations

from typing import ClassVar

import pandas as pd

from ..registry import Registry


class ExportFormat:
    help: ClassVar[str] = ""
    suffix: ClassVar[str] = ".json"

    def export(self, df: pd.DataFrame, records: list, machine: str) -> tuple[str, str]:
        """(the file's text, a line saying what it holds) for `machine`'s rows of `df`."""
        raise NotImplementedError


formats: Registry[type[ExportFormat]] = Registry("export format", "bench.export")
