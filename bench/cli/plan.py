"""`bench plan`: the expanded matrix and the skipped combinations, without running anything."""

from __future__ import annotations

from . import Command, commands
from ._common import DEFAULT_SUITE, console, load_plan


@commands.register("plan")
class Plan(Command):
    help = "print the expanded matrix without running anything"

    def add_arguments(self, parser) -> None:
        parser.add_argument("suite", nargs="?", help=f"suite YAML or packaged suite name (default: {DEFAULT_SUITE})")

    def __call__(self, args) -> int:
        path, plan = load_plan(args.suite)
        out = console()
        out.print(f"{path}: {len(plan.points)} point(s)")
        for i, p in enumerate(plan.points, 1):
            out.print(f"  {i:>3}. {p.label}  [dim]{p.point_id} weights={p.weights}[/dim]")
        for label, reason in plan.skipped:
            out.print(f"  [yellow]skipped[/yellow] {label}: {reason}")
        return 0
