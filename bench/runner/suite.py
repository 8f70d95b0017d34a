"""Run a plan point by point, each isolated, appending one record per point as it finishes."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from ..plan import Plan
from ..results import append_record, completed_points, make_record, new_run_id, now
from .isolate import run_isolated


def _headline(record: dict) -> str:
    if record["status"] != "ok":
        return f"[red]{record['status']}[/red]: {record['error']}"
    m = record["metrics"]
    lat = m.get("latency") or {}
    parts = []
    if "p50_ms" in lat:
        parts.append(f"p50 {lat['p50_ms']:.2f} ms")
    if "throughput" in m:
        parts.append(f"{m['throughput']['samples_per_s']:.1f} samples/s")
    flags = [w.split(":")[0] for w in lat.get("warnings", [])]
    if not m.get("sufficient", True):
        flags.append("insufficient sample")
    return "[green]ok[/green] " + ", ".join(parts) + (f" [yellow]({'; '.join(flags)})[/yellow]" if flags else "")


def run_plan(plan: Plan, out_dir: Path, machine: dict, resume: bool, console: Console,
             cache_dir: Path) -> list[dict]:
    """Each point becomes exactly one appended record, whatever happens to its child."""
    done = completed_points(out_dir) if resume else set()
    todo = [p for p in plan.points if p.point_id not in done]
    if resume and done:
        console.print(f"resume: {len(plan.points) - len(todo)} of {len(plan.points)} points already ok in {out_dir}")
    session_id = new_run_id()
    suite_start = time.monotonic()
    records = []
    for i, point in enumerate(todo, 1):
        elapsed = time.monotonic() - suite_start
        console.print(f"[bold][{i}/{len(todo)}][/bold] {point.label}  [dim](elapsed {elapsed:.0f} s)[/dim]")
        started = now()
        log_path = out_dir / "logs" / f"{point.point_id}.log"
        outcome = run_isolated(point.model_dump(mode="json"), str(cache_dir), str(log_path),
                               point.settings.timeout_s)
        record = make_record(point, outcome, machine, started, outcome["child_wall_s"], session_id)
        append_record(out_dir, record)
        records.append(record)
        console.print(f"      {_headline(record)}  [dim]({record['wall_s']:.1f} s)[/dim]")
    console.print(f"{len(todo)} point(s) in {time.monotonic() - suite_start:.0f} s; records in {out_dir / 'runs.jsonl'}")
    return records
