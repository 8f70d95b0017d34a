"""Typed, versioned run records and the store they are written to and read from."""

from .schema import SCHEMA_VERSION, Metrics, Record, ScenarioResult
from .store import append_record, latest_per_point, load_many, load_records, resume_state, write_machine

__all__ = ["SCHEMA_VERSION", "Metrics", "Record", "ScenarioResult", "append_record", "latest_per_point",
           "load_many", "load_records", "resume_state", "write_machine"]
