"""The claims of the industry reports, each with its verdict against the chip catalog and the records.

In a report the section appears only where the records bear on a claim the harness can measure (a
record-based check gives a verdict other than `not checkable here`): a report on fp32 and bf16 alone says
nothing about compression. `bench claims` always shows every claim.
"""

from __future__ import annotations

import pandas as pd

from ..claims import Evidence, assess, checks, claims_table, load_claims
from ..hardware.catalog import load_catalog
from . import section


def claims_shown(df: pd.DataFrame) -> bool:
    """Whether a report on `df` carries the claims (and the chips beside them)."""
    if df.empty:
        return False
    measured = [c for c in load_claims() if checks.get(c.check).uses_records]
    evidence = Evidence(chips=load_catalog(), frame=df)
    return any(a.verdict != "not checkable here" for _, a in assess(measured, evidence))


@section("claims", "Claims of the industry reports, checked", order=90,
         note="Verdicts: holds, does not hold, partly, not checkable here, each with its reason. The reports speak of "
              "training cost; the harness measures inference, so the cost verdict is the inference analog. Memory "
              "for the reports' models is a projection from bytes per parameter measured here, labelled as such. "
              "Catalog figures: the chips section; claims and quotes: bench/claims/claims.yaml.")
def claims_section(df: pd.DataFrame) -> pd.DataFrame | None:
    if not claims_shown(df):
        return None
    return claims_table(assess(load_claims(), Evidence(chips=load_catalog(), frame=df)))
