"""`bench chips`: the chip catalog side by side (rich in a terminal, markdown or CSV), or every figure's source."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import Command, commands
from ._common import console

FORMATS = ("rich", "markdown", "csv")


def add_output_arguments(parser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="rich",
                        help="how to print (default: rich, for a terminal)")
    parser.add_argument("--out", help="also write NAME.md and NAME.csv into this directory")


def rich_table(table: pd.DataFrame, title: str, note: str):
    """A terminal table: short columns never wrap, long ones (names, sources) fold; units on a second header line."""
    from rich import box
    from rich.table import Table

    shown = Table(title=title, caption=note, caption_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True)
    for column in table.columns:
        longest = max([len(str(v)) for v in table[column]] + [0])
        shown.add_column(str(column).replace(" ", "\n", 1), overflow="fold", no_wrap=longest <= 14,
                         min_width=None if longest <= 14 else 12)
    for row in table.itertuples(index=False):
        shown.add_row(*("" if pd.isna(v) else str(v) for v in row))
    return shown


def emit(table: pd.DataFrame, name: str, title: str, note: str, fmt: str, out: str | None,
         rich_view=rich_table) -> None:
    """Print `table` for a terminal (`rich_view(table, title, note)`), as markdown or CSV; write .md and .csv
    under `out`."""
    markdown = f"## {title}\n\n{table.to_markdown(index=False)}\n\n{note}\n"
    if fmt == "markdown":
        print(markdown)
    elif fmt == "csv":
        print(table.to_csv(index=False), end="")
    else:
        console().print(rich_view(table, title, note))
    if out:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.md").write_text(markdown, encoding="utf-8")
        table.to_csv(folder / f"{name}.csv", index=False)
        console().print(f"wrote {folder / name}.md and {folder / name}.csv")


@commands.register("chips")
class Chips(Command):
    help = "show the chip catalog side by side (vendor figures; third-party ones marked) or every figure's source"

    def add_arguments(self, parser) -> None:
        parser.add_argument("--sources", action="store_true", help="list every figure with its kind, source and date")
        add_output_arguments(parser)

    def __call__(self, args) -> int:
        from ..report.chips import LEGEND, chips_table, sources_table

        if args.sources:
            emit(sources_table(), "chip-sources", "Chip catalog: every figure's source", LEGEND, args.format, args.out)
            return 0
        table = chips_table()
        if args.format == "rich":  # fit a terminal: the marks in the cells say the kind, the name says the vendor
            table = (table.drop(columns=["vendor", "INT8 sparse TOPS", "third-party"])
                     .assign(chip=table["chip"].str.split(" [(]").str[0]))
        emit(table, "chips", "Chips side by side (dense TFLOPS and TOPS)",
             f"{LEGEND}. Sources: `bench chips --sources`.", args.format, args.out)
        return 0
