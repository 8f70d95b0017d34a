"""`bench report`: the page, the tables (markdown, CSV) and the plots from every runs.jsonl under one or more
directories; the terminal gets the narrow summary."""

from __future__ import annotations

from pathlib import Path

from . import Command, commands
from ._common import console, find_peaks
from ._prices import add_price_arguments, read_prices


def read_results(dirs: list[str], peaks_file: str | None) -> tuple[list, dict, Path]:
    """The records under `dirs` (each read once), the measured peaks per machine (`peaks_file`, else found
    beside the results), and the folder files are written to by default (the first DIR)."""
    from ..records.store import load_many
    from ..registry import load_extensions

    sources = [Path(d) for d in dirs]
    records = load_many(sources)
    # the report sections a suite brought with it, where its files are still there to be read
    load_extensions(sorted({e for r in records for e in r.config.extensions or []
                            if not e.endswith(".py") or Path(e).is_file()}))
    machine_ids = {r.machine_id for r in records}
    peaks: dict = {}
    for src in sources:
        for machine, found in find_peaks(machine_ids, src, peaks_file).items():
            peaks.setdefault(machine, found)
    first = sources[0]
    return records, peaks, first if first.is_dir() else first.parent


@commands.register("report")
class Report(Command):
    help = "build the report from one or more results directories (several machines are kept apart)"

    def add_arguments(self, parser) -> None:
        parser.add_argument("dirs", nargs="+", metavar="DIR", help="directories holding runs.jsonl (searched recursively)")
        parser.add_argument("--out", help="where to write report files (default: the first DIR)")
        parser.add_argument("--peaks", help="peaks.json from `bench peak` (default: found beside the results)")
        add_price_arguments(parser)

    def __call__(self, args) -> int:
        from ..report.terminal import print_summary
        from ..report.writer import report_frame, write_report

        prices = read_prices(args)
        records, peaks, first = read_results(args.dirs, args.peaks)
        df = report_frame(records, peaks, prices.for_machines({r.machine_id for r in records}))
        _, files = write_report(df, Path(args.out) if args.out else first)
        print_summary(console(), df, files)
        return 0
