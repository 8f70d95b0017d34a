"""Students against their teachers: the teacher's point a distilled student is compared with, shared by the
report's distillation section and the claims' distillation cost cut so both compare the same pair."""

from __future__ import annotations

import pandas as pd

MATCH = ["machine", "device", "scenario", "batch", "seq", "backend", "variant"]


def teacher_of(df: pd.DataFrame, student: pd.Series) -> pd.Series | None:
    """The student's teacher measured on the same machine at the same shape, backend and variant (the last such
    row of `df`), or None where the teacher was not measured there."""
    match = df[(df["model"] == student["teacher"]) & (df[MATCH] == student[MATCH]).all(axis=1)]
    return match.iloc[-1] if not match.empty else None
