"""Result records: one JSON object per run, appended and flushed to runs.jsonl so a crash loses nothing.

The schema is documented in results/README.md; bump SCHEMA_VERSION when a field changes meaning.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

SCHEMA_VERSION = 1
RUNS_FILE = "runs.jsonl"
STATUSES = ("ok", "failed", "timeout", "unsupported")


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def make_record(point, outcome: dict, machine: dict, started: datetime, wall_s: float, session_id: str) -> dict:
    """Assemble a record from the plan's point and what the child (or the parent, on a crash) reported."""
    status = outcome.get("status", "failed")
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": new_run_id(),
        "session_id": session_id,
        "point_id": point.point_id,
        "status": status,
        "error": outcome.get("error"),
        "started_at": started.astimezone(timezone.utc).isoformat(timespec="seconds"),
        "wall_s": round(wall_s, 3),
        "config": point.model_dump(mode="json"),
        "machine": machine,
        "provenance": outcome.get("provenance", {"weights": point.weights}),
        "metrics": outcome.get("metrics", {}),
        "log": outcome.get("log"),
    }


def append_record(out_dir: Path, record: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, separators=(",", ":"), allow_nan=False, default=_jsonable) + "\n"
    with open(out_dir / RUNS_FILE, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def _jsonable(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def find_run_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(path.rglob(RUNS_FILE))


def load_records(path: Path) -> list[dict]:
    """All records under a directory (or one runs.jsonl); a torn last line from a crash is skipped."""
    records = []
    for file in find_run_files(path):
        with open(file, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return records


def latest_per_point(records: Iterable[dict]) -> list[dict]:
    """The newest record of each point, in first-seen order: re-runs replace, never duplicate."""
    latest: dict[str, dict] = {}
    for rec in records:
        latest[rec["point_id"]] = rec
    return list(latest.values())


def completed_points(out_dir: Path) -> set[str]:
    runs = out_dir / RUNS_FILE
    if not runs.exists():
        return set()
    return {r["point_id"] for r in load_records(runs) if r.get("status") == "ok"}


def now() -> datetime:
    return datetime.now(timezone.utc)
