"""Command line: `bench run`, `bench plan`, `bench report`, `bench env`.

Bad input ends with one line on stderr naming the file, the key and the fix, and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import ConfigError

DEFAULT_SUITE = Path("configs/quickstart.yaml")
PACKAGED_SUITE = Path(__file__).parent / "suites" / "quickstart.yaml"
EXIT_BAD_INPUT = 2


def _suite_path(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    return DEFAULT_SUITE if DEFAULT_SUITE.exists() else PACKAGED_SUITE


def _load_plan(suite_arg: str | None):
    from .config import load_suite
    from .plan import build_plan

    path = _suite_path(suite_arg)
    suite = load_suite(path)
    return path, build_plan(suite, path)


def _console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def cmd_plan(args) -> int:
    path, plan = _load_plan(args.suite)
    console = _console()
    console.print(f"{path}: {len(plan.points)} point(s)")
    for i, p in enumerate(plan.points, 1):
        console.print(f"  {i:>3}. {p.label}  [dim]{p.point_id} weights={p.weights}[/dim]")
    for label, reason in plan.skipped:
        console.print(f"  [yellow]skipped[/yellow] {label}: {reason}")
    return 0


def _default_out(plan, machine: dict) -> Path:
    return Path("results") / machine["machine_id"] / (plan.suite.name or "suite")


def cmd_run(args) -> int:
    from .hardware.machine import describe_machine
    from .report.render import build_report
    from .results import load_records
    from .runner.suite import run_plan

    path, plan = _load_plan(args.suite)  # validation first: a bad suite writes nothing
    if args.find_peak:
        plan = plan.with_scenario_option("server", find_peak=True)
    machine = describe_machine()
    out = Path(args.out) if args.out else _default_out(plan, machine)
    console = _console()
    console.print(f"suite {path} -> {out}  ({len(plan.points)} points on {machine['machine_id']})")
    for label, reason in plan.skipped:
        console.print(f"  [yellow]skipped[/yellow] {label}: {reason}")
    cache = Path(args.cache_dir) if args.cache_dir else Path(".cache") / "bench"
    run_plan(plan, out, machine, args.resume, console, cache)
    ids = {p.point_id for p in plan.points}
    records = [r for r in load_records(out) if r["point_id"] in ids]
    md, files = build_report(records, out, find_peaks(records, out), args.price_per_hour)
    print(md, flush=True)
    console.print(f"report: {', '.join(str(f) for f in files)}")
    return 0


def cmd_report(args) -> int:
    from .report.render import build_report
    from .results import load_records

    src = Path(args.dir)
    if not src.exists():
        raise ConfigError(str(src), "(path)", "no such results directory", "give a directory that holds runs.jsonl")
    records = load_records(src)
    if not records:
        raise ConfigError(str(src), "(path)", "no runs.jsonl records found", "run `bench run` first, or check the path")
    out = Path(args.out) if args.out else (src if src.is_dir() else src.parent)
    md, files = build_report(records, out, find_peaks(records, src, args.peaks), args.price_per_hour)
    console = _console()
    print(md, flush=True)
    console.print(f"report: {', '.join(str(f) for f in files)}")
    return 0


def find_peaks(records: list[dict], where: Path, extra: str | None = None) -> dict:
    """Measured ceilings per machine: --peaks, then peaks.json beside or above the results, then results/<machine>/."""
    found: dict = {}
    candidates = [Path(extra)] if extra else []
    candidates += [where / "peaks.json", where.parent / "peaks.json"]
    candidates += [Path("results") / m / "peaks.json" for m in {r["machine"]["machine_id"] for r in records}]
    for path in candidates:
        if path.is_file():
            data = json.loads(path.read_text())
            found.setdefault(data.get("machine_id"), data)
    return found


def cmd_env(args) -> int:
    from .hardware.machine import describe_machine

    print(json.dumps(describe_machine(), indent=2))
    return 0


def cmd_peak(args) -> int:
    from .hardware.machine import cpu_flags, describe_machine
    from .hardware.peaks import load_or_measure_peaks

    machine = describe_machine()
    peaks = load_or_measure_peaks(peaks_path(machine), machine["machine_id"], force=args.force,
                                  seconds_per_test=args.seconds, cpu_flags=cpu_flags())
    print(json.dumps(peaks, indent=2))
    return 0


def peaks_path(machine: dict) -> Path:
    """Measured ceilings live beside the machine's results (asv-style, one folder per machine)."""
    return Path("results") / machine["machine_id"] / "peaks.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a suite, each point in its own process, then print the table")
    run.add_argument("suite", nargs="?", help=f"suite YAML (default: {DEFAULT_SUITE})")
    run.add_argument("--out", help="output directory (default: results/<machine>/<suite>)")
    run.add_argument("--resume", action="store_true", help="skip points already recorded as ok in --out")
    run.add_argument("--cache-dir", help="where exported models are cached (default: .cache/bench)")
    run.add_argument("--price-per-hour", type=float, help="machine price in $/hour: adds $ per million inferences/tokens")
    run.add_argument("--find-peak", action="store_true",
                     help="server scenarios: also search for the highest rate that meets the latency bound")
    run.set_defaults(func=cmd_run)

    plan = sub.add_parser("plan", help="print the expanded matrix without running anything")
    plan.add_argument("suite", nargs="?", help=f"suite YAML (default: {DEFAULT_SUITE})")
    plan.set_defaults(func=cmd_plan)

    report = sub.add_parser("report", help="build comparison tables from a results directory")
    report.add_argument("dir", help="directory holding runs.jsonl (searched recursively)")
    report.add_argument("--out", help="where to write report files (default: DIR)")
    report.add_argument("--peaks", help="peaks.json from `bench peak` (default: found beside the results)")
    report.add_argument("--price-per-hour", type=float, help="machine price in $/hour: adds $ per million inferences/tokens")
    report.set_defaults(func=cmd_report)

    peak = sub.add_parser("peak", help="measure (once, then cached per machine) GEMM FLOP/s and memory bandwidth")
    peak.add_argument("--force", action="store_true", help="measure again even if cached")
    peak.add_argument("--seconds", type=float, default=2.0, help="seconds per measurement")
    peak.set_defaults(func=cmd_peak)

    env = sub.add_parser("env", help="print this machine's description as JSON")
    env.set_defaults(func=cmd_env)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted: records written so far are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
