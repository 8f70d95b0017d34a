"""The report's first section: the answer per model and shape (answer.py) with its charts (charts.py)."""

from __future__ import annotations

import pandas as pd

from ..analysis.frame import SIGNIFICANCE
from . import section
from .answer import best_variants
from .charts import answer_charts


@section("best", "The answer: best variant per model within the quality bound", order=5, plot=answer_charts,
         note="Best = the highest p50 speedup over fp32 PyTorch at the same shape and machine among the variants "
              "within the quality bound, a significantly faster one first; where none is significantly faster the "
              "answer is fp32 and `closest` names the nearest variant for information. `speed only` = the quality "
              "cannot decide (random weights, or quality not measured); `nothing meets the quality bound` = keep "
              "fp32; `excluded` = faster variants the bound rules out. " + SIGNIFICANCE)
def best_section(df: pd.DataFrame) -> pd.DataFrame | None:
    table = best_variants(df)
    return table.drop(columns="machine") if table is not None and table["machine"].nunique() <= 1 else table
