"""Run a plan point by point through an executor, appending one record per point as it arrives.

Records land on this (the driver's) disk in the folder of the machine that made them: the executor
says where (`--out`, or results/<machine_id>/<suite>).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from rich.console import Console

from .executors import Executor
from .plan import Plan
from .records.build import make_record, new_id
from .records.flags import sample_flags
from .records.harness import current_harness
from .records.schema import Record
from .records.store import RUNS_FILE, append_record, load_records, resume_state, write_machine


def _headline(record: Record) -> str:
    if record.status != "ok":
        return f"[red]{record.status}[/red]: {record.error}"
    m = record.metrics
    parts = []
    if m.latency and m.latency.p50_ms is not None:
        parts.append(f"p50 {m.latency.p50_ms:.2f} ms")
    if m.throughput:
        parts.append(f"{m.throughput.samples_per_s:.1f} samples/s")
    flags = [w.split(":")[0] for w in (m.latency.warnings if m.latency else [])] + sample_flags(m)
    return "[green]ok[/green] " + ", ".join(parts) + (f" [yellow]({'; '.join(flags)})[/yellow]" if flags else "")


def _rounds(points: list, repeat: int, done: Counter) -> list:
    """Each point `repeat` times less the ok runs it has, round robin (every point once, then again), so a
    point's processes are spread over the suite's duration rather than run back to back."""
    return [p for r in range(repeat) for p in points if done[p.point_id] + r < repeat]


def _resume(plan: Plan, executor: Executor, out: Path | None, console: Console, repeat: int) -> list:
    """The runs still to make: a point is done when this same harness version recorded it ok `repeat` times;
    points recorded by another version are re-run, and the runner says so."""
    harness = current_harness()
    done: Counter = Counter()
    stale: set[str] = set()
    for folder in executor.resume_dirs(plan.suite.name, out):
        stale |= resume_state(folder, harness)[1]
        if (folder / RUNS_FILE).exists():
            done.update(r.point_id for r in load_records(folder / RUNS_FILE)
                        if r.status == "ok" and r.harness.same_as(harness))
    todo = _rounds(plan.points, repeat, done)
    finished = sum(1 for p in plan.points if done[p.point_id] >= repeat)
    if done:
        times = f" {repeat} times" if repeat > 1 else ""
        console.print(f"resume: {finished} of {len(plan.points)} points already ok{times}")
    rerun = {p.point_id for p in todo if p.point_id in stale}
    if rerun:
        console.print(f"resume: re-running {len(rerun)} point(s) recorded by another harness version "
                      f"(this one is {harness.label})")
    return todo


def run_plan(plan: Plan, out: Path | None, resume: bool, console: Console, cache_dir: Path,
             executor: Executor, repeat: int = 1) -> list[Path]:
    """Each run of a point (`repeat` per point, each its own process) becomes exactly one appended record,
    whatever happens to its child. Returns the folders records were written to."""
    todo = _resume(plan, executor, out, console, repeat) if resume else _rounds(plan.points, repeat, Counter())
    session_id = new_id()
    suite_start = time.monotonic()
    records: list[Record] = []
    folders: list[Path] = []
    for machine in executor.machines(todo).values():
        folder = executor.destination(plan.suite.name, machine["machine_id"], out)
        if folder.parent.name == machine["machine_id"]:
            write_machine(folder.parent, machine)
    started = 0

    def announce(point) -> None:
        nonlocal started
        started += 1
        console.print(f"[bold][{started}/{len(todo)}][/bold] {point.label}  "
                      f"[dim](elapsed {time.monotonic() - suite_start:.0f} s)[/dim]")

    # children on this machine write their logs in place; remote ones send the text back (log_text)
    local_logs = executor.destination(plan.suite.name, _this_machine_id(), out) / "logs"
    for finished in executor.run(todo, cache_dir, local_logs, announce):
        folder = executor.destination(plan.suite.name, finished.machine["machine_id"], out)
        if folder not in folders:
            folders.append(folder)
            if folder.parent.name == finished.machine["machine_id"]:
                write_machine(folder.parent, finished.machine)
        log = f"logs/{finished.log_name or f'{finished.point.point_id}-{new_id()[:6]}.log'}"
        if finished.log_text is not None:
            (folder / "logs").mkdir(parents=True, exist_ok=True)
            (folder / log).write_text(finished.log_text, encoding="utf-8")
        record = make_record(finished.point, finished.outcome, finished.machine, finished.started, finished.wall_s,
                             session_id, node=finished.node, log=log if (folder / log).exists() else None)
        append_record(folder, record)
        records.append(record)
        on = f" on {finished.node}" if finished.node else ""
        console.print(f"      {_headline(record)}  [dim]({record.wall_s:.1f} s{on})[/dim]")
    _print_overhead(records, time.monotonic() - suite_start, console)
    console.print(f"{len(todo)} point(s) in {time.monotonic() - suite_start:.0f} s; records in "
                  f"{', '.join(str(f / 'runs.jsonl') for f in folders) or '(none)'}")
    return folders


def _this_machine_id() -> str:
    from .hardware.machine import describe_machine

    return describe_machine()["machine_id"]


def _print_overhead(records: list[Record], suite_wall_s: float, console: Console) -> None:
    """How much of the suite's wall time was spent outside the scenarios' windows (warm-up and timed loop)."""
    measured = sum(r.phases.scenario_s or 0.0 for r in records if r.phases)
    if suite_wall_s > 0 and measured:
        overhead = 1 - measured / suite_wall_s
        console.print(f"overhead: {overhead:.0%} of the suite's {suite_wall_s:.0f} s was outside warm-up and timed traffic "
                      "(see the report's time-to-result section)")
