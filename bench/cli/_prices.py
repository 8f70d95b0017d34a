"""Machine prices for the cost columns, shared by `bench run` and `bench report`.

`--prices FILE` (YAML or JSON: machine id -> $/hour), then `--price MACHINE=USD_PER_HOUR` (repeatable, wins
over the file), and `--price-per-hour USD` for a report that holds one machine (a run over several targets or
machines is refused up front). Read before anything runs, so a bad price ends the command before a single point
is measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError

PRICE_FIX = "write MACHINE=USD_PER_HOUR with a price of 0 or more, e.g. --price my-box=2.5"


def add_price_arguments(parser) -> None:
    parser.add_argument("--price", action="append", default=[], metavar="MACHINE=USD_PER_HOUR",
                        help="a machine's price in $/hour (repeatable): adds $ per million inferences/tokens")
    parser.add_argument("--prices", metavar="FILE", help="YAML or JSON mapping machine id to $/hour")
    parser.add_argument("--price-per-hour", type=float,
                        help="the price in $/hour of the one machine in the report (several: use --price)")


def _price(where: str, key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(where, key, f"price {value!r} is not a number of dollars per hour >= 0", PRICE_FIX)
    return float(value)


@dataclass
class Prices:
    by_machine: dict[str, float] = field(default_factory=dict)
    single: float | None = None  # --price-per-hour: only for a report of one machine

    def check_one_machine(self, names: list[str], holder: str, noun: str) -> None:
        """--price-per-hour is one machine's price: refused where `holder` (a report, a run) spans several."""
        if self.single is not None and len(names) > 1:
            raise ConfigError("--price-per-hour", f"{self.single:g}",
                              f"{holder} {len(names)} {noun} ({', '.join(names)}), each priced apart",
                              "give each machine its price with --price MACHINE=USD_PER_HOUR or --prices FILE")

    def for_machines(self, machine_ids: set[str]) -> dict[str, float]:
        """$/hour per machine of this report."""
        if self.single is None:
            return dict(self.by_machine)
        self.check_one_machine(sorted(machine_ids), "the report holds", "machines")
        return {**{m: self.single for m in machine_ids}, **self.by_machine}


def read_prices(args) -> Prices:
    by_machine: dict[str, float] = {}
    if args.prices:
        from ..config import parse_yaml

        path = Path(args.prices)
        if not path.is_file():
            raise ConfigError(args.prices, "(file)", "prices file not found", "check the path")
        data = parse_yaml(path)
        if not isinstance(data, dict):
            raise ConfigError(args.prices, "(top level)", "not a mapping of machine id to $/hour",
                              "write one `machine-id: 2.5` line per machine")
        by_machine = {str(k): _price(args.prices, str(k), v) for k, v in data.items()}
    for item in args.price:
        machine, sep, value = item.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep or not machine or number is None:
            raise ConfigError("--price", item, "not MACHINE=USD_PER_HOUR", PRICE_FIX)
        by_machine[machine] = _price("--price", item, number)
    single = _price("--price-per-hour", "(value)", args.price_per_hour) if args.price_per_hour is not None else None
    return Prices(by_machine, single)
