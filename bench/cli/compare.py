"""`bench compare BASE NEW`: every point the two sides share, NEW against BASE, with a 95% interval and a
verdict from the one rule of bench/compare/stats.py; points on one side only are listed, and a point ok in
BASE that NEW lacks is `missing from NEW` (a regression for `--fail-on-regression`).

BASE and NEW are result directories, or with `--by` names within the results under `--in`: two machine ids,
two variants (paired by model, device, scenario and shape on each machine), or two runs (session ids or
harness digests/commits, paired by machine and point). Ids may be shortened to a unique prefix.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError
from . import Command, commands
from ._common import console

GATE_OK, GATE_FAILED = 0, 1
RULE = ("NEW / BASE of the p50 (the mean of per-process medians); above 1 = NEW is slower. faster / slower only "
        "where p < 0.05, the 95% interval excludes 1 and the change is at least the minimum effect; else n.s. "
        "`processes` = NEW v BASE. `within process only`: a side has one process, so the verdict speaks for the "
        "noise within a process only; separate processes of one point differ by several % (run with "
        "`bench run --repeat 3` or more). The rule: bench/compare/stats.py.")


def _pick(where: str, kind: str, token: str, known: dict[str, str]) -> str:
    """The one known id equal to `token`, or the only one it is a prefix of."""
    if token in known:
        return token
    found = [k for k in known if k.startswith(token)]
    if len(found) == 1:
        return found[0]
    problem = f"no {kind} {token!r}" if not found else f"{kind} {token!r} is ambiguous ({', '.join(found[:5])})"
    listing = "; ".join(f"{k} ({v})" if v else k for k, v in list(known.items())[:12])
    raise ConfigError(where, kind, problem, f"use one of: {listing}")


def _runs(records) -> dict[str, str]:
    """Sessions and harnesses (by source digest and commit) a `--by run` id may name, with what they hold."""
    sizes = Counter(r.session_id for r in records)
    known: dict[str, str] = {}
    for rec in sorted(records, key=lambda r: r.started_at):
        known.setdefault(rec.session_id, f"session of {rec.started_at:%Y-%m-%d %H:%M}, {sizes[rec.session_id]} "
                                         f"records, harness {rec.harness.label}")
        known.setdefault(rec.harness.source_digest, f"harness {rec.harness.label}")
        if rec.harness.commit:
            known.setdefault(rec.harness.commit, f"harness {rec.harness.label}")
    return known


def _in_run(records, token: str, where: str) -> list:
    chosen = _pick(where, "run", token, _runs(records))
    return [r for r in records if chosen in (r.session_id, r.harness.source_digest, r.harness.commit)]


def select(args) -> tuple[list, list, Callable, list[str]]:
    """(BASE records, NEW records, the key pairing them, columns that only repeat what BASE and NEW name)."""
    from ..compare.pairs import workload
    from ..records.store import load_many

    if args.by is None:
        for side in (args.base, args.new):
            if not Path(side).exists():
                raise ConfigError(side, "(path)", "no such results directory",
                                  "give a results directory, or name machines, variants or runs with "
                                  "--by machine|variant|run")
        base, new = load_many([Path(args.base)]), load_many([Path(args.new)])
        one_machine_each = len({r.machine_id for r in base}) == 1 == len({r.machine_id for r in new})
        key = workload if one_machine_each else (lambda r: (r.machine_id, workload(r)))
        return base, new, key, ["machine"] if one_machine_each else []
    where = " ".join(args.where)
    records = load_many([Path(d) for d in args.where])
    if args.by == "machine":
        known = {r.machine_id: "" for r in records}
        b, n = (_pick(where, "machine", t, known) for t in (args.base, args.new))
        return ([r for r in records if r.machine_id == b], [r for r in records if r.machine_id == n], workload,
                ["machine"])
    if args.by == "variant":
        known = {r.config.variant.name: r.config.backend for r in records}
        b, n = (_pick(where, "variant", t, known) for t in (args.base, args.new))

        def shape(r):
            c = r.config
            return r.machine_id, c.model.name, c.device, c.scenario.label, c.batch_size, c.seq_len, c.target

        return ([r for r in records if r.config.variant.name == b], [r for r in records if r.config.variant.name == n],
                shape, ["variant", "backend"])
    return _in_run(records, args.base, where), _in_run(records, args.new, where), (lambda r: r.key), []


def _label(row, varying: list[str]) -> str:
    """The point in a few words: its model and shape, and whichever other columns vary in the table."""
    parts = [str(row[c]) for c in ("machine", "model", "device", "backend", "variant", "scenario", "target")
             if (c == "model" or c in varying) and row[c]]
    return " · ".join(parts + [f"b{row['batch']} s{row['seq']}"])


def _varying(table) -> list[str]:
    return [c for c in table.columns if table[c].nunique() > 1]


def _terminal(table, out) -> None:
    from rich.table import Table

    from ..report.formatting import display

    shown, varying = display(table), _varying(table)
    grid = Table(show_edge=False, pad_edge=False)
    for name in ("point", "BASE p50", "NEW p50", "NEW/BASE [95% CI]", "verdict", "processes"):
        grid.add_column(name, justify="right" if "p50" in name else "left")
    for (_, row), (_, cells) in zip(table.iterrows(), shown.iterrows()):
        grid.add_row(_label(row, varying), cells["base_p50_ms"], cells["new_p50_ms"], cells["time_ratio"],
                     row["verdict"], cells["processes"] or "")
    out.print(grid)


def _markdown(table, args) -> str:
    from ..report.formatting import display

    title = f"# bench compare: {args.base} -> {args.new}" + (f" (by {args.by})" if args.by else "")
    return f"{title}\n\n{display(table).to_markdown(index=False)}\n\n{_summary(table)}\n\n{RULE}\n"


def _summary(table) -> str:
    counts = table["verdict"].value_counts()
    text = ", ".join(f"{n} {verdict}" for verdict, n in counts.items())
    if (table["test"] == "within process only").any():
        text += ". Some rows have one process on a side: their verdict speaks for within-process noise only"
    return text if text.endswith(".") else text + "."  # "2 n.s." takes no second period


@commands.register("compare")
class Compare(Command):
    help = "compare two sets of results point by point: p50 ratio with a 95% interval and significance"

    def add_arguments(self, parser) -> None:
        parser.add_argument("base", metavar="BASE", help="results directory, or with --by a machine, variant or run")
        parser.add_argument("new", metavar="NEW", help="the same kind as BASE")
        parser.add_argument("--by", choices=["machine", "variant", "run"],
                            help="BASE and NEW name machines, variants or runs (sessions, harness digests or "
                                 "commits) within --in (default: they are results directories)")
        parser.add_argument("--in", dest="where", nargs="+", default=["results"], metavar="DIR",
                            help="with --by: the results tree(s) to look in (default: results)")
        parser.add_argument("--min-effect", type=float, default=2.0, metavar="PCT",
                            help="smaller changes are n.s. however small p is (default: 2, as pyperf and asv do)")
        parser.add_argument("--fail-on-regression", type=float, metavar="PCT",
                            help="exit 1 when any point is significantly slower by more than PCT percent, or "
                                 "is ok in BASE and failed or missing in NEW")
        parser.add_argument("--out", help="write compare.md and compare.csv into this directory")

    def __call__(self, args) -> int:
        from ..compare.pairs import ONE_SIDED, pair_table, regressions

        if not 0 <= args.min_effect < 100:
            raise ConfigError("--min-effect", str(args.min_effect), "must be a percentage from 0 to under 100",
                              "use e.g. --min-effect 2")
        if args.fail_on_regression is not None and args.fail_on_regression < 0:
            raise ConfigError("--fail-on-regression", str(args.fail_on_regression), "must be 0 or more",
                              "use e.g. --fail-on-regression 5")
        base, new, key, repeated = select(args)
        table = pair_table(base, new, key, args.min_effect / 100)
        if table["verdict"].isin(ONE_SIDED).all():
            raise ConfigError(f"{args.base} / {args.new}", "(points)", "no point was measured on both sides",
                              "check that both sides ran the same suite" + ("" if args.by else ", or use --by"))
        if table["machine"].nunique() <= 1:
            repeated.append("machine")
        if not table["target"].astype(bool).any():
            repeated.append("target")
        table = table.drop(columns=sorted(set(repeated)))
        out = console()
        _terminal(table, out)
        out.print(_summary(table))
        if args.out:
            folder = Path(args.out)
            folder.mkdir(parents=True, exist_ok=True)
            table.to_csv(folder / "compare.csv", index=False)
            (folder / "compare.md").write_text(_markdown(table, args), encoding="utf-8")
            out.print(f"compare: {folder / 'compare.md'}, {folder / 'compare.csv'}")
        if args.fail_on_regression is None:
            return GATE_OK
        worse = regressions(table, args.fail_on_regression)
        if worse.empty:
            out.print(f"regression gate passed: no point significantly slower by more than "
                      f"{args.fail_on_regression:g}%, none broken or missing")
            return GATE_OK
        for _, row in worse.iterrows():
            change = "" if row["verdict"] != "slower" else (
                f"{(row['time_ratio'] - 1) * 100:+.1f}% [{(row['time_ratio_ci_low'] - 1) * 100:+.1f}%, "
                f"{(row['time_ratio_ci_high'] - 1) * 100:+.1f}%]")
            caveat = " (within process only: may be noise between processes)" if row["test"] == "within process only" else ""
            out.print(f"[red]regression[/red] {_label(row, _varying(table))}: {change or row['verdict']}{caveat}")
        return GATE_FAILED
