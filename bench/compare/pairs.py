"""Which records stand behind a point on each side, and the point-by-point table `bench compare` prints.

A point's processes are its ok records made by the same harness as its newest record (comparisons trust
only records of one harness); the same run read twice (overlapping directories) counts once. Newest means
started last (`started_at`), whatever order the records were read in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable

import pandas as pd

from ..errors import ConfigError
from ..records.schema import Record
from .stats import MIN_EFFECT, Run, compare

Key = Callable[[Record], Hashable]
ONLY_IN_NEW, ONLY_IN_BASE = "only in NEW", "only in BASE"
MISSING_FROM_NEW = "missing from NEW"  # ok in BASE: a benchmark that stopped running
ONE_SIDED = (ONLY_IN_NEW, ONLY_IN_BASE, MISSING_FROM_NEW)
DESCRIBE = ["machine", "model", "backend", "device", "variant", "scenario", "batch", "seq", "target"]


def unique_runs(records: Iterable[Record]) -> list[Record]:
    """Each run once (the last read of it), oldest first by start time; runs started at the same time keep the
    order they were last read in."""
    seen: dict[tuple[str, str], Record] = {}
    for rec in records:
        seen.pop((rec.machine_id, rec.run_id), None)
        seen[(rec.machine_id, rec.run_id)] = rec
    return sorted(seen.values(), key=lambda r: r.started_at)


def group(records: Iterable[Record], key: Key) -> dict[Hashable, list[Record]]:
    """Each key's runs, oldest first: a group's last record is its newest."""
    groups: dict[Hashable, list[Record]] = defaultdict(list)
    for rec in unique_runs(records):
        groups[key(rec)].append(rec)
    return groups


def processes(latest: Record, group_records: Iterable[Record]) -> list[Record]:
    """The processes behind `latest`: none unless it is ok, else every ok record of its harness."""
    if latest.status != "ok":
        return []
    return [r for r in group_records if r.status == "ok" and r.harness.same_as(latest.harness)]


def runs(records: Iterable[Record]) -> list[Run]:
    return [Run.of(r.metrics.samples_ms, r.metrics.throughput.samples_per_s if r.metrics.throughput else None)
            for r in records]


def workload(rec: Record) -> str:
    """The point's identity without the cluster target: the same work measured on another machine."""
    return rec.config.model_copy(update={"target": None}).point_id


def describe(rec: Record) -> dict:
    cfg = rec.config
    return {"machine": rec.machine_id, "model": cfg.model.name, "backend": cfg.backend, "device": cfg.device,
            "variant": cfg.variant.name, "scenario": cfg.scenario.label, "batch": cfg.batch_size,
            "seq": cfg.seq_len, "target": cfg.target or ""}


def _one_workload(groups: dict, side: str) -> None:
    for key, recs in groups.items():
        found = {workload(r) for r in recs}
        if len(found) > 1:
            raise ConfigError(side, str(key), f"{len(found)} different configurations measured under one point "
                              f"({', '.join(sorted(found))})", "point --in at one suite's folder")


def _status_row(base: list[Record] | None, new: list[Record] | None) -> str:
    if base is None:
        return ONLY_IN_NEW
    if new is None:
        return MISSING_FROM_NEW if base[-1].status == "ok" else ONLY_IN_BASE
    failed = [f"{g[-1].status} in {name}" for name, g in (("BASE", base), ("NEW", new)) if g[-1].status != "ok"]
    return "not comparable: " + ", ".join(failed)


def pair_table(base: list[Record], new: list[Record], key: Key, min_effect: float = MIN_EFFECT) -> pd.DataFrame:
    """One row per point on either side: NEW / BASE of the p50 with its interval, p, processes, verdict."""
    base_groups, new_groups = group(base, key), group(new, key)
    _one_workload(base_groups, "BASE")
    _one_workload(new_groups, "NEW")
    rows = []
    for k in list(base_groups) + [k for k in new_groups if k not in base_groups]:
        b, n = base_groups.get(k), new_groups.get(k)
        row = describe((n or b)[-1])
        both_ok = bool(b and n) and b[-1].status == "ok" and n[-1].status == "ok"
        cmp = compare(runs(processes(b[-1], b)), runs(processes(n[-1], n)), "median", min_effect) if both_ok else None
        if not both_ok:
            row["verdict"] = _status_row(b, n)
        elif cmp is None:
            row["verdict"] = "untested: no samples"
        else:
            row.update({"base_p50_ms": cmp.base, "new_p50_ms": cmp.new, "time_ratio": cmp.ratio,
                        "time_ratio_ci_low": cmp.low, "time_ratio_ci_high": cmp.high, "p_value": cmp.p,
                        "processes": cmp.processes, "test": cmp.test, "verdict": cmp.verdict})
        rows.append(row)
    return pd.DataFrame(rows, columns=DESCRIBE + ["base_p50_ms", "new_p50_ms", "time_ratio", "time_ratio_ci_low",
                                                  "time_ratio_ci_high", "p_value", "processes", "test", "verdict"])


def regressions(table: pd.DataFrame, pct: float) -> pd.DataFrame:
    """Rows significantly slower by more than `pct` percent, and points ok in BASE that are not ok in NEW or not
    in NEW at all (a point that no longer runs must not pass a gate that a slower one fails)."""
    slower = (table["verdict"] == "slower") & ((table["time_ratio"] - 1) * 100 > pct)
    broken = table["verdict"].str.startswith("not comparable") & ~table["verdict"].str.contains("in BASE")
    return table[slower | broken | (table["verdict"] == MISSING_FROM_NEW)]
