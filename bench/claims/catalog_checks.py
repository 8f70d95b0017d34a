"""Claim checks that read the chip catalog: which chips publish a figure, how figures compare, which PCIe
generation and process node the makers are on. Every number quoted carries its kind when it is not the
vendor's own, so a verdict resting on third-party figures says so."""

from __future__ import annotations

from statistics import median
from typing import Annotated

from pydantic import AfterValidator, Field

from ..hardware.catalog import FIGURES, PRECISIONS, Chip, Figure
from . import Assessment, Evidence, Strict, check, from_parts

SAID = {True: "yes", False: "no", None: "unknown"}


def short(chip: Chip) -> str:
    return chip.name.split(" (")[0]


def fmt(fig: Figure) -> str:
    return f"{fig.value:g} {fig.unit}" + (" (third-party)" if fig.kind != "vendor" else "")


def label(field: str) -> str:
    return field.upper() if field in PRECISIONS else field.replace("_", " ")


def find(chips: list[Chip], pattern: str) -> Chip | None:
    """The one catalog entry whose name contains `pattern` (case-insensitive), else None."""
    found = [c for c in chips if pattern.lower() in c.name.lower()]
    return found[0] if len(found) == 1 else None


def accelerators(chips: list[Chip], country: str, same: bool = True) -> list[Chip]:
    return [c for c in chips if c.accelerator and (c.country == country) == same]


def _known_figure(value: str) -> str:
    if value not in FIGURES:
        raise ValueError(f"unknown catalog figure {value!r}; one of {', '.join(FIGURES)}")
    return value


FigureName = Annotated[str, AfterValidator(_known_figure)]


class FieldParam(Strict):
    field: FigureName


class LackParams(FieldParam):
    country: str
    share: float = Field(0.5, ge=0, lt=1, description="the claim holds above this share of the group")


@check("most-lack-figure", LackParams)
def most_lack_figure(p: LackParams, ev: Evidence) -> Assessment:
    """'Most of a country's chips lack X': the share of its accelerators that publish no X figure."""
    group = accelerators(ev.chips, p.country)
    if not group:
        return Assessment("not checkable here", f"the catalog holds no {p.country} accelerator")
    lacking = [c for c in group if c.figure(p.field) is None]
    others = accelerators(ev.chips, p.country, same=False)
    published = [c for c in others if c.figure(p.field) is not None]
    share = len(lacking) / len(group)
    name = label(p.field)
    catalog = (f"no {name} figure: {', '.join(map(short, lacking)) or 'none'}; "
               f"{name} published by {len(published)} of {len(others)} other accelerators")
    reason = (f"{len(lacking)} of {len(group)} {p.country} accelerators in the catalog publish no {name} figure "
              f"({share:.0%}; the claim needs more than {p.share:.0%}); a missing figure is read as no {name} support")
    return Assessment("holds" if share > p.share else "does not hold", reason, catalog=catalog)


class MedianParams(Strict):
    fields: list[FigureName] = Field(min_length=1)
    country: str
    factor: float = Field(2.0, gt=1, description="a figure matches within this factor of the foreign median")


@check("near-foreign-median", MedianParams)
def near_foreign_median(p: MedianParams, ev: Evidence) -> Assessment:
    """'Matches foreign mid-range products': each of the group's figures against the foreign median."""
    parts, lines = [], []
    for field in p.fields:
        foreign = [c.figure(field) for c in accelerators(ev.chips, p.country, same=False)]
        foreign = [f.value for f in foreign if f is not None]
        mine = [(c, c.figure(field)) for c in accelerators(ev.chips, p.country) if c.figure(field) is not None]
        if not foreign or not mine:
            lines.append(f"{label(field)}: nothing to compare")
            continue
        mid = median(foreign)
        ratios = [(c, f, f.value / mid) for c, f in mine]
        parts += [1 / p.factor <= r <= p.factor for _, _, r in ratios]
        lines.append(f"{label(field)} (foreign median {mid:g} over {len(foreign)} chips): "
                     + ", ".join(f"{short(c)} {fmt(f)} = {r:.2f}x" for c, f, r in ratios))
    verdict = from_parts(parts)
    matched = sum(1 for x in parts if x)
    reason = ("'mid-range' is read as the median of the foreign accelerators in the catalog (the report names no "
              f"product); a figure matches within a factor of {p.factor:g}: {matched} of {len(parts)} match")
    return Assessment(verdict, reason if parts else "no figure to compare", catalog="; ".join(lines))


class ValuesParams(FieldParam):
    values: dict[str, float] = Field(min_length=1, description="chip name pattern -> claimed value")
    tolerance: float = Field(0.05, ge=0, description="relative")


@check("figure-values", ValuesParams)
def figure_values(p: ValuesParams, ev: Evidence) -> Assessment:
    """'Chip X has figure V': the catalog figure against each claimed value."""
    parts, lines = [], []
    for pattern, claimed in p.values.items():
        chip = find(ev.chips, pattern)
        fig = chip.figure(p.field) if chip else None
        if fig is None:
            parts.append(None)
            lines.append(f"{pattern}: no {label(p.field)} figure" if chip else f"{pattern}: no single catalog entry")
            continue
        parts.append(abs(fig.value - claimed) <= p.tolerance * claimed)
        lines.append(f"{short(chip)} {fmt(fig)} (claimed {claimed:g})")
    return Assessment(from_parts(parts), f"catalog against the claimed {label(p.field)} values, within "
                      f"{p.tolerance:.0%}", catalog="; ".join(lines))


class RatioParams(FieldParam):
    chip: str
    reference: str
    ratio: float = Field(gt=0)
    tolerance: float = Field(0.1, ge=0, description="absolute, on the ratio")


@check("figure-ratio", RatioParams)
def figure_ratio(p: RatioParams, ev: Evidence) -> Assessment:
    """'Chip X has about r times chip Y's figure'."""
    chip, ref = find(ev.chips, p.chip), find(ev.chips, p.reference)
    a, b = (chip.figure(p.field) if chip else None), (ref.figure(p.field) if ref else None)
    if a is None or b is None:
        return Assessment("not checkable here", f"the catalog has no {label(p.field)} figure for "
                          + " and ".join(x for x, f in ((p.chip, a), (p.reference, b)) if f is None))
    ratio = a.value / b.value
    ok = abs(ratio - p.ratio) <= p.tolerance
    catalog = f"{short(chip)} {fmt(a)}, {short(ref)} {fmt(b)}: ratio {ratio:.2f}"
    reason = f"claimed about {p.ratio:g} (accepted {p.ratio - p.tolerance:.2f} to {p.ratio + p.tolerance:.2f})"
    if "third-party" in (a.kind, b.kind):
        reason += "; rests on third-party figures"
    return Assessment("holds" if ok else "does not hold", reason, catalog=catalog)


class PcieParams(Strict):
    leaders: list[str] = Field(min_length=1, description="vendors said to lead")
    country: str = Field(description="the makers the 'others' part is about")
    leader_gen: float = 5
    others_gen: float = 4
    share: float = Field(0.5, ge=0, lt=1)


def _pcie(chip: Chip) -> float | None:
    return chip.host_interface.pcie_gen if chip.host_interface else None


@check("pcie-leaders", PcieParams)
def pcie_leaders(p: PcieParams, ev: Evidence) -> Assessment:
    """'Vendors L were first on PCIe N, the others are mostly on N-1': three parts, judged in the catalog."""
    chips = [c for c in ev.chips if c.accelerator]
    on_new = sorted((c for c in chips if (_pcie(c) or 0) >= p.leader_gen), key=lambda c: c.host_interface.date)
    leaders_on_new = [any(c.vendor == v for c in on_new) if any(c.vendor == v for c in chips) else None
                      for v in p.leaders]
    others = [c for c in accelerators(chips, p.country) if c.vendor not in p.leaders and _pcie(c) is not None]
    others_part = (sum(_pcie(c) <= p.others_gen for c in others) / len(others) > p.share) if others else None
    first_part = (on_new[0].vendor in p.leaders) if on_new else None
    parts = [*leaders_on_new, others_part, first_part]
    unpublished = [short(c) for c in accelerators(chips, p.country) if _pcie(c) is None]
    catalog = (f"PCIe {p.leader_gen:.1f}+: " + ", ".join(f"{short(c)} ({c.host_interface.date})" for c in on_new)
               + f"; other {p.country} makers: "
               + (", ".join(f"{short(c)} PCIe {_pcie(c):.1f}" for c in others) or "none")
               + (f"; not published: {', '.join(unpublished)}" if unpublished else ""))
    reason = (f"on PCIe {p.leader_gen:.1f}: " + ", ".join(f"{v} {SAID[x]}" for v, x in zip(p.leaders, leaders_on_new))
              + f"; other {p.country} makers mostly on PCIe {p.others_gen:.1f} or older: {SAID[others_part]}; "
              f"the earliest PCIe {p.leader_gen:.1f} entry is a leader's: {SAID[first_part]} ('first' is judged "
              "within the catalog, by the dates of the sources)")
    return Assessment(from_parts(parts), reason, catalog=catalog)


class NodeParams(Strict):
    leader: str
    leader_nm: float = Field(gt=0)
    country: str
    group_nm: float = Field(gt=0)
    share: float = Field(0.5, ge=0, lt=1)


def _nm(chip: Chip) -> float | None:
    return chip.process_node.nm if chip.process_node else None


@check("process-nodes", NodeParams)
def process_nodes(p: NodeParams, ev: Evidence) -> Assessment:
    """'Leader is at X nm, the group mostly at Y nm': the leader's finest node and the group's share at Y."""
    lead = [_nm(c) for c in ev.chips if c.accelerator and c.vendor == p.leader and _nm(c)]
    group = [c for c in accelerators(ev.chips, p.country) if _nm(c)]
    lead_part = (min(lead) == p.leader_nm) if lead else None
    share = sum(_nm(c) == p.group_nm for c in group) / len(group) if group else None
    parts = [lead_part, None if share is None else share > p.share]
    kinds = " (some third-party)" if any(c.process_node.kind != "vendor" for c in group) else ""
    catalog = (f"{p.leader} finest: {min(lead):g} nm" if lead else f"{p.leader}: no node published") + "; " + \
        ", ".join(f"{short(c)} {_nm(c):g} nm" for c in group) + kinds
    reason = (f"{p.leader} at {p.leader_nm:g} nm: {SAID[lead_part]}; "
              + (f"{share:.0%} of {len(group)} {p.country} accelerators at {p.group_nm:g} nm (claim: most)"
                 if group else f"no {p.country} node published"))
    return Assessment(from_parts(parts), reason, catalog=catalog)


class StatementParams(Strict):
    chip: str
    reference: str
    fields: list[FigureName] = Field(min_length=1)
    speedup: float = Field(gt=0)
    stated_by: str


@check("vendor-statement", StatementParams)
def vendor_statement(p: StatementParams, ev: Evidence) -> Assessment:
    """A vendor's measured speedup on hardware the harness does not run: never checkable here; the peak
    figures say how much more of its peak the chip would have to reach than the reference."""
    chip, ref = find(ev.chips, p.chip), find(ev.chips, p.reference)
    lines = []
    for field in p.fields:
        a, b = (chip.figure(field) if chip else None), (ref.figure(field) if ref else None)
        if a and b:
            ratio = a.value / b.value
            lines.append(f"{label(field)} peak {p.chip}/{p.reference} = {ratio:.2f}x: {p.speedup:g}x the speed "
                         f"needs {p.speedup / ratio:.1f}x the {p.reference}'s fraction of peak")
    reason = (f"a measured speedup stated by {p.stated_by}; no record here ran on {p.chip} (the harness runs on "
              "CPUs and CUDA GPUs), and peak figures do not measure speed")
    return Assessment("not checkable here", reason, catalog="; ".join(lines) or "no shared peak figure")
