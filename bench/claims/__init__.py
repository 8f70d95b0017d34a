"""Claims of the industry reports (claims.yaml, package data) and the registered rules that check them.

Each claim names the report it comes from (file name, a short quote in Chinese, an English gloss) and one
check. A check is a small registered function `(params, evidence) -> Assessment`; its params are a pydantic
model, so a bad key in claims.yaml is a one-line ConfigError. Evidence is the chip catalog and, where the
harness can measure the claim, the records frame (bench.analysis.frame.records_frame). A verdict is one of
VERDICTS, always with the reason; projections say that they are projections.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError
from ..hardware.catalog import Chip
from ..registry import Registry

CLAIMS_FILE = Path(str(resources.files("bench.claims") / "claims.yaml"))
VERDICTS = ("holds", "does not hold", "partly", "not checkable here")
Verdict = Literal["holds", "does not hold", "partly", "not checkable here"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Quote(Strict):
    report: str = Field(min_length=5, description="file name of the report in shared/seeds")
    zh: str = Field(min_length=2, description="the report's words, verbatim")
    en: str = Field(min_length=2, description="an English gloss")


class Claim(Strict):
    id: str = Field(pattern=r"^[a-z0-9-]+$")
    claim: str = Field(min_length=5, description="the claim in one English sentence")
    quote: Quote
    check: str
    params: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class Assessment:
    verdict: Verdict
    reason: str
    catalog: str = ""
    records: str = ""

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")


@dataclass(frozen=True)
class Evidence:
    chips: list[Chip]
    frame: pd.DataFrame = field(default_factory=pd.DataFrame)
    this_machine: str | None = None


@dataclass(frozen=True)
class Check:
    params: type[BaseModel]
    run: Callable[[Any, Evidence], Assessment]
    uses_records: bool


checks: Registry[Check] = Registry("claim check", "bench.claims")


def check(name: str, params: type[BaseModel], uses_records: bool = False):
    """Register `fn(params, evidence) -> Assessment` as the claim check `name`."""

    def decorate(fn):
        checks.register(name)(Check(params=params, run=fn, uses_records=uses_records))
        return fn

    return decorate


def from_parts(parts: list[bool | None]) -> Verdict:
    """One verdict from the parts of a claim: all hold, none holds, some do; unknown parts never confirm."""
    known = [p for p in parts if p is not None]
    if not known:
        return "not checkable here"
    if all(known) and len(known) == len(parts):
        return "holds"
    return "does not hold" if not any(known) else "partly"


def load_claims(path: Path = CLAIMS_FILE) -> list[Claim]:
    """The claims file, validated: every claim's check exists and its params fit that check."""
    where = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(where, "(file)", f"not valid YAML: {exc}".split("\n")[0], "fix the YAML syntax") from None
    if not isinstance(data, dict) or not isinstance(data.get("claims"), list):
        raise ConfigError(where, "claims", "expected a top-level list `claims:`", "list the claims under `claims:`")
    claims = []
    for i, item in enumerate(data["claims"]):
        key = f"claims[{i}]"
        try:
            claim = Claim.model_validate(item)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ConfigError(where, ".".join([key, *map(str, err["loc"])]), err["msg"],
                              "see the other claims in the file for the expected keys") from None
        if claim.check not in checks:
            raise ConfigError(where, f"{claim.id}.check", f"unknown claim check {claim.check!r}",
                              f"use one of: {', '.join(checks.names())}")
        try:
            checks.get(claim.check).params.model_validate(claim.params)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ConfigError(where, ".".join([claim.id, "params", *map(str, err["loc"])]), err["msg"],
                              f"give the params that check {claim.check!r} takes") from None
        claims.append(claim)
    return claims


def assess(claims: list[Claim], evidence: Evidence) -> list[tuple[Claim, Assessment]]:
    out = []
    for claim in claims:
        spec = checks.get(claim.check)
        out.append((claim, spec.run(spec.params.model_validate(claim.params), evidence)))
    return out


def claims_table(assessed: list[tuple[Claim, Assessment]]) -> pd.DataFrame:
    return pd.DataFrame([{
        "claim": claim.claim, "report": claim.quote.report, "quote": claim.quote.zh, "gloss": claim.quote.en,
        "catalog says": a.catalog, "records say": a.records, "verdict": a.verdict, "reason": a.reason,
    } for claim, a in assessed])
