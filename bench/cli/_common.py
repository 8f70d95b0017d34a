"""What several commands share: finding a suite, a console, where measured peaks live."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

DEFAULT_SUITE = "quickstart"


def packaged_suites() -> dict[str, Path]:
    """Suites shipped inside the package (`bench/suites/*.yaml`), by name."""
    folder = resources.files("bench") / "suites"
    return {Path(f.name).stem: Path(str(f)) for f in folder.iterdir() if f.name.endswith(".yaml")}


def suite_path(arg: str | None) -> Path:
    """A path to a suite file, or the name of a packaged suite (`bench run cpu-quantization`)."""
    name = arg or DEFAULT_SUITE
    path = Path(name)
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return path
    return packaged_suites().get(name, path)


def load_plan(suite_arg: str | None):
    from ..config import load_suite
    from ..plan import build_plan

    path = suite_path(suite_arg)
    suite = load_suite(path)
    return path, build_plan(suite, path)


def console():
    """The terminal; a pipe or a CI log gets the tables' 120 columns rather than rich's 80, so tables do not fold."""
    from rich.console import Console

    terminal = Console(highlight=False, soft_wrap=True)
    if terminal.is_terminal:
        return terminal
    from ..report.summary import TERMINAL_WIDTH

    return Console(highlight=False, soft_wrap=True, width=TERMINAL_WIDTH)


def peaks_path(machine: dict, root: Path = Path("results")) -> Path:
    """Measured ceilings live beside the machine's results (asv-style, one folder per machine)."""
    return root / machine["machine_id"] / "peaks.json"


def find_peaks(records: list, where: Path, extra: str | None = None) -> dict:
    """Measured ceilings per machine: --peaks, then peaks.json beside or above the results, then results/<machine>/."""
    found: dict = {}
    candidates = [Path(extra)] if extra else []
    candidates += [where / "peaks.json", where.parent / "peaks.json"]
    machine_ids = {r.machine_id for r in records}
    candidates += [p for m in sorted(machine_ids) for p in (where / m / "peaks.json", Path("results") / m / "peaks.json")]
    for path in candidates:
        if path.is_file():
            data = json.loads(path.read_text())
            found.setdefault(data.get("machine_id"), data)
    return found
