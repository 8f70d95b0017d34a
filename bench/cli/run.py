"""`bench run`: expand a suite, run each point in isolation through an executor, print the summary (the wide
tables go to the report files)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from . import Command, commands
from ._common import DEFAULT_SUITE, console, find_peaks, load_plan
from ._prices import add_price_arguments, read_prices


@commands.register("run")
class Run(Command):
    help = "run a suite, each point in its own process, then print the summary and write the report"

    def add_arguments(self, parser) -> None:
        parser.add_argument("suite", nargs="?", help=f"suite YAML or packaged suite name (default: {DEFAULT_SUITE})")
        parser.add_argument("--out", help="output directory (default: results/<machine>/<suite>)")
        parser.add_argument("--resume", action="store_true",
                            help="skip points already recorded as ok by this harness version in --out")
        parser.add_argument("--cache-dir", help="where exported models are cached (default: .cache/bench)")
        parser.add_argument("--repeat", type=int, default=1, metavar="N",
                            help="run each point N times, each in its own process (round robin), so comparisons "
                                 "can test between processes (default: 1)")
        add_price_arguments(parser)
        parser.add_argument("--find-peak", action="store_true",
                            help="serving scenarios: also search the highest load (rate or users) that meets every SLO "
                                 "(sets `capacity: true`)")
        parser.add_argument("--executor", default="local",
                            help="where points run: local (default) or ray (a Ray cluster, see README)")
        parser.add_argument("--address", default="auto", help="ray: the cluster address (default: auto, the running one)")
        parser.add_argument("--start-method", choices=["forkserver", "spawn"], default="forkserver",
                            help="how each point's fresh process starts: forked from a server that imported torch "
                                 "once (default), or a new interpreter")

    def __call__(self, args) -> int:
        from ..executors import executors
        from ..records.store import load_records
        from ..report.terminal import print_summary
        from ..report.writer import report_frame, write_report

        path, plan = load_plan(args.suite)  # validation first: a bad suite writes nothing
        prices = read_prices(args)
        prices.check_one_machine(plan.suite.targets or [], "the suite runs on", "targets")
        if args.repeat < 1:
            raise ConfigError("--repeat", str(args.repeat), "must be 1 or more", "use --repeat 3 (or leave it out)")
        if args.executor not in executors:
            raise ConfigError("--executor", args.executor, f"unknown executor {args.executor!r}",
                              f"use one of: {', '.join(executors.names())}")
        executor_cls = executors.get(args.executor)
        missing = executor_cls.missing()
        if missing:
            raise ConfigError("--executor", args.executor, missing, executor_cls.install or "see README.md")
        if args.find_peak:
            plan = plan.with_serving_options(capacity=True)
        executor = executor_cls(address=args.address, start_method=args.start_method)
        executor.check(plan, str(path))
        out = Path(args.out) if args.out else None
        machine_ids = sorted(executor.machine_ids(plan.points))
        prices.check_one_machine(machine_ids, f"the {args.executor} executor will run on", "machines")
        for machine_id in machine_ids:  # the report reads them after the run: a corrupt one ends it before
            find_peaks({machine_id}, executor.destination(plan.suite.name, machine_id, out))
        out_console = console()
        out_console.print(f"suite {path}: {len(plan.points)} points, executor {args.executor}")
        for label, reason in plan.skipped:
            out_console.print(f"  [yellow]skipped[/yellow] {label}: {reason}")
        cache = Path(args.cache_dir) if args.cache_dir else Path(".cache") / "bench"
        from ..runner import run_plan

        folders = run_plan(plan, out, args.resume, out_console, cache, executor, repeat=args.repeat)
        folders += [d for d in executor.resume_dirs(plan.suite.name, out)
                    if d not in folders and (d / "runs.jsonl").exists()]
        if not folders:
            return 0
        ids = {p.point_id for p in plan.points}
        records = [r for folder in folders for r in load_records(folder) if r.point_id in ids]
        recorded = {r.machine_id for r in records}
        report_dir = out or (folders[0] if len(folders) == 1 else folders[0].parents[1])
        peaks: dict = {}
        for folder in folders:
            for machine, found in find_peaks(recorded, folder).items():
                peaks.setdefault(machine, found)
        df = report_frame(records, peaks, prices.for_machines(recorded))
        _, files = write_report(df, report_dir)
        print_summary(out_console, df, files)
        return 0
