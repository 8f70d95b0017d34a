"""What several commands share: finding a suite, a console, where measured peaks live."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from ..errors import ConfigError

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
    from ..report.terminal import TERMINAL_WIDTH

    return Console(highlight=False, soft_wrap=True, width=TERMINAL_WIDTH)


def peaks_path(machine: dict, root: Path = Path("results")) -> Path:
    """Measured ceilings live beside the machine's results (asv-style, one folder per machine)."""
    return root / machine["machine_id"] / "peaks.json"


PEAKS_FIX = "delete it and run `bench peak` on that machine, or give another with --peaks FILE"


def read_peaks(path: Path) -> dict:
    """One peaks file as `bench peak` writes it; anything else ends the command in one line naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(str(path), "(file)", f"not a peaks file: {str(exc).splitlines()[0]}", PEAKS_FIX) from None
    if not isinstance(data, dict) or not isinstance(data.get("machine_id"), str):
        raise ConfigError(str(path), "machine_id", "not a peaks file: no machine_id at the top level", PEAKS_FIX)
    return data


def find_peaks(machine_ids: set[str], where: Path, extra: str | None = None) -> dict:
    """Measured ceilings per machine: --peaks, then peaks.json beside or above the results, then results/<machine>/."""
    if extra and not Path(extra).is_file():
        raise ConfigError("--peaks", extra, "peaks file not found",
                          "check the path, or leave --peaks out to use the peaks.json found beside the results")
    found: dict = {}
    candidates = [Path(extra)] if extra else []
    candidates += [where / "peaks.json", where.parent / "peaks.json"]
    candidates += [p for m in sorted(machine_ids) for p in (where / m / "peaks.json", Path("results") / m / "peaks.json")]
    for path in candidates:
        if path.is_file():
            data = read_peaks(path)
            found.setdefault(data["machine_id"], data)
    return found
