"""Assemble a Record from a plan point and what its child (or the parent, on a crash) reported."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from pydantic import ValidationError

from ..config import RunPoint
from .harness import current_harness
from .schema import Phases, Record


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def now() -> datetime:
    return datetime.now(timezone.utc)


def make_record(point: RunPoint, outcome: dict, machine: dict, started: datetime, wall_s: float, session_id: str,
                node: str | None = None, log: str | None = None) -> Record:
    """The record of a point; an outcome that does not validate (a NaN, a missing field) becomes a `failed`
    record that says why, rather than a crash of the whole suite or a figure that is not a number."""
    try:
        return _record(point, outcome, machine, started, wall_s, session_id, node, log)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        failed = {"status": "failed", "error": f"the child's result is not a valid record: {where}: {err['msg']}"}
        return _record(point, failed, machine, started, wall_s, session_id, node, log)


def _record(point: RunPoint, outcome: dict, machine: dict, started: datetime, wall_s: float, session_id: str,
            node: str | None, log: str | None) -> Record:
    phases = None
    if outcome.get("phases"):
        raw = dict(outcome["phases"])
        if raw.get("scenario_s") is not None and wall_s:
            raw["overhead_s"] = max(0.0, wall_s - raw["scenario_s"])
            raw["overhead_fraction"] = raw["overhead_s"] / wall_s
        phases = Phases.model_validate(raw)
    return Record(
        run_id=new_id(), session_id=session_id, point_id=point.point_id,
        status=outcome.get("status", "failed"), error=outcome.get("error"),
        started_at=started, wall_s=round(wall_s, 3), harness=current_harness(), config=point,
        machine=machine, node=node,
        provenance=outcome.get("provenance") or {"weights": point.weights},
        metrics=outcome.get("metrics") or {}, phases=phases, log=log,
    )
