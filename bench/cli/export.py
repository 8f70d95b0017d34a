"""`bench export`: the records in another tool's format (bench/export), one file per machine."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from . import Command, commands
from ._common import console
from .report import read_results


@commands.register("export")
class Export(Command):
    help = "write the records in another tool's format (pytest-benchmark JSON for `pytest-benchmark compare` and " \
           "github-action-benchmark)"

    def add_arguments(self, parser) -> None:
        parser.add_argument("dirs", nargs="+", metavar="DIR", help="directories holding runs.jsonl (searched recursively)")
        parser.add_argument("--format", default="pytest-benchmark", help="the format (default: pytest-benchmark)")
        parser.add_argument("--out", metavar="FILE",
                            help="the file to write, for records of one machine (default: <format>/<machine>.json "
                                 "in the first DIR, one per machine)")
        parser.add_argument("--peaks", help="peaks.json from `bench peak`, for the efficiency figures (default: found "
                                            "beside the results)")

    def __call__(self, args) -> int:
        from ..export import formats
        from ..report.writer import report_frame

        if args.format not in formats:
            raise ConfigError("--format", args.format, f"unknown export format {args.format!r}",
                              f"use one of: {', '.join(formats.names())}")
        records, peaks, first = read_results(args.dirs, args.peaks)
        df = report_frame(records, peaks)
        machines = sorted(df["machine"].unique())
        if args.out and len(machines) > 1:
            raise ConfigError("--out", args.out, f"the records come from {len(machines)} machines and a "
                              f"{args.format} file describes one", "leave out --out (one file per machine is "
                              "written), or give the DIR of one machine")
        exporter = formats.get(args.format)()
        for machine in machines:
            text, said = exporter.export(df, records, machine)
            path = Path(args.out) if args.out else first / args.format / f"{machine}{exporter.suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            console().print(f"wrote {path}: {said}")
        return 0
