"""`bench claims [RESULTS...]`: the industry reports' claims, each with its verdict against the chip catalog
and, where the harness can measure it, the records under RESULTS (default: ./results when it holds any)."""

from __future__ import annotations

from pathlib import Path

from . import Command, commands
from .chips import add_output_arguments, emit

DEFAULT_RESULTS = Path("results")
VERDICT_STYLE = {"holds": "green", "does not hold": "red", "partly": "yellow", "not checkable here": "dim"}


def claim_blocks(table, title: str, note: str):
    """One block a claim: verdict and claim, the report's words, what the catalog and records say, why."""
    from rich.console import Group
    from rich.text import Text

    blocks = [Text(f"{title}\n", style="bold")]
    for row in table.to_dict("records"):
        block = Text()
        block.append(f"[{row['verdict']}] ", style=f"bold {VERDICT_STYLE[row['verdict']]}")
        block.append(f"{row['claim']}\n", style="bold")
        block.append(f"  {row['report']}: {row['quote']} ({row['gloss']})\n", style="dim")
        for label, key in (("catalog", "catalog says"), ("records", "records say"), ("why", "reason")):
            if row[key]:
                block.append(f"  {label}: ", style="bold")
                block.append(f"{row[key]}\n")
        blocks.append(block)
    blocks.append(Text(note, style="dim"))
    return Group(*blocks)


@commands.register("claims")
class Claims(Command):
    help = "check the industry reports' claims against the chip catalog and the records"

    def add_arguments(self, parser) -> None:
        parser.add_argument("results", nargs="*", metavar="RESULTS",
                            help="directories holding runs.jsonl (default: ./results if it holds any)")
        add_output_arguments(parser)

    def __call__(self, args) -> int:
        import pandas as pd

        from ..claims import Evidence, assess, claims_table, load_claims
        from ..hardware.catalog import load_catalog
        from ..hardware.machine import describe_machine
        from ..records.store import find_run_files, load_many
        from ..analysis.frame import records_frame

        claims = load_claims()  # a bad claims file stops here, before any records are read
        paths = [Path(p) for p in args.results]
        if not paths and DEFAULT_RESULTS.is_dir() and find_run_files(DEFAULT_RESULTS):
            paths = [DEFAULT_RESULTS]
        frame = records_frame(load_many(paths)) if paths else pd.DataFrame()
        here = describe_machine()["machine_id"]
        table = claims_table(assess(claims, Evidence(chips=load_catalog(), frame=frame, this_machine=here)))
        read = ", ".join(map(str, paths)) or "none"
        emit(table, "claims", "Claims of the industry reports, checked",
             f"records read: {read}; this machine: {here}. Cost verdicts are the inference analog of training-cost "
             "claims; memory for the reports' models is projected from measured bytes per parameter.",
             args.format, args.out, rich_view=claim_blocks)
        return 0
