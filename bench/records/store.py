"""Where records live: appended and fsynced to runs.jsonl, read back (migrating old versions), and the
asv-style `machine.json` beside each machine's results.

Layout: `results/<machine_id>/machine.json` and `results/<machine_id>/<suite>/runs.jsonl`. A report may
read any tree holding several machines' folders; rows are keyed by (machine, point), never by point alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from pydantic import ValidationError

from ..errors import ConfigError
from .migrate import migrate
from .schema import SCHEMA_VERSION, Harness, Record

RUNS_FILE = "runs.jsonl"
MACHINE_FILE = "machine.json"


def append_record(out_dir: Path, record: Record) -> None:
    """One line per record, flushed and fsynced: a crash loses at most the line being written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    line = record.model_dump_json() + "\n"
    _end_torn_line(out_dir / RUNS_FILE)
    with open(out_dir / RUNS_FILE, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def _end_torn_line(path: Path) -> None:
    """Make the file end with a newline, so the next record starts a line of its own instead of being glued
    onto what a crash left (and lost with it, or making every later read fail).

    The last line of a file that does not end with a newline was cut by a crash: a fragment that is not JSON
    holds no whole record and is cut away; a whole record that lost only its newline is kept and ended.
    """
    if not path.exists():
        return
    with open(path, "r+b") as fh:
        if fh.seek(0, os.SEEK_END) == 0:
            return
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        fh.seek(0)
        data = fh.read()
        start = data.rfind(b"\n") + 1
        if _is_json(data[start:]):
            fh.write(b"\n")
        else:
            fh.truncate(start)
        fh.flush()
        os.fsync(fh.fileno())


def write_machine(machine_dir: Path, machine: dict) -> Path:
    """`machine.json`, written once per machine folder (records stay self-describing regardless)."""
    path = machine_dir / MACHINE_FILE
    if not path.exists():
        machine_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(machine, indent=2, sort_keys=True), encoding="utf-8")
        tmp.replace(path)
    return path


def find_run_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(path.rglob(RUNS_FILE))


def parse_record(data: dict, where: str) -> Record:
    """A record of any known schema version as the current model; one-line error otherwise."""
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        try:
            data = migrate(data)
        except ValueError as exc:
            raise ConfigError(where, "schema_version", str(exc),
                              f"read it with the bench version that wrote it, or upgrade bench (this one reads "
                              f"schema versions 1 to {SCHEMA_VERSION})") from None
    try:
        return Record.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(record)"
        raise ConfigError(where, key, f"not a valid record: {err['msg']}",
                          "remove the line, or re-run the point to record it again") from None


def load_records(path: Path) -> list[Record]:
    """All records under a directory (or one runs.jsonl). A torn last line from a crash is skipped."""
    records = []
    for file in find_run_files(path):
        lines = file.read_bytes().splitlines()
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line:
                continue
            try:
                data = json.loads(line)
            except ValueError:  # not JSON, or not UTF-8 where a crash cut a character in two
                if number == len(lines):
                    continue  # the line a crash tore; everything before it is intact
                raise ConfigError(f"{file}:{number}", "(line)", "not JSON", _damaged_line_fix(line)) from None
            records.append(parse_record(data, f"{file}:{number}"))
    return records


def _damaged_line_fix(line: bytes) -> str:
    """How to mend a line that is not JSON. Older versions of bench appended after a torn line without ending it,
    so a whole record may follow the fragment on the same line: deleting the line would delete that record too."""
    text = line.decode("utf-8", errors="replace")
    glued = text.rfind('{"schema_version":', 1)
    if glued > 0 and _is_json(text[glued:]):
        return (f"a crash tore a record and the next was appended to it: delete its first {glued} characters "
                "(the torn record), keeping the whole record after them")
    return "remove the damaged line; the other records are kept"


def _is_json(text: bytes | str) -> bool:
    try:
        json.loads(text)
    except ValueError:  # JSONDecodeError, or UnicodeDecodeError where a crash cut a character in two
        return False
    return True


def load_many(paths: Iterable[Path]) -> list[Record]:
    """Records from several directories (`bench report DIR1 DIR2`), each path checked first."""
    records: list[Record] = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise ConfigError(str(path), "(path)", "no such results directory",
                              "give a directory that holds runs.jsonl")
        found = load_records(path)
        if not found:
            raise ConfigError(str(path), "(path)", "no runs.jsonl records found",
                              "run `bench run` first, or check the path")
        records.extend(found)
    return records


def latest_per_point(records: Iterable[Record]) -> list[Record]:
    """The newest record of each (machine, point) by its start time, in first-seen order: re-runs replace, never
    duplicate, whatever order folders are read in (`bench report NEW OLD`); records started at the same time
    keep read order. The same point measured on two machines stays two rows."""
    latest: dict[tuple[str, str], Record] = {}
    for rec in records:
        if rec.key not in latest or rec.started_at >= latest[rec.key].started_at:
            latest[rec.key] = rec
    return list(latest.values())


def resume_state(out_dir: Path, harness: Harness) -> tuple[set[str], set[str]]:
    """(points done by this harness, points ok only under another harness version) in out_dir.

    A point counts as done only when its ok record was made by the same harness; the caller says so
    when it re-runs one recorded by another version.
    """
    runs = out_dir / RUNS_FILE
    if not runs.exists():
        return set(), set()
    done, stale = set(), set()
    for rec in load_records(runs):
        if rec.status != "ok":
            continue
        (done if rec.harness.same_as(harness) else stale).add(rec.point_id)
    return done, stale - done
