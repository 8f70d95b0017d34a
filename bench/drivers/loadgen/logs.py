"""Reading MLPerf LoadGen's logs: the timings the loadgen driver reports are LoadGen's own.

Each sample's `complete_ns` comes from the "Sample" events of the trace (mlperf_log_trace.json), the very latency
LoadGen records and summarises, and, in the server, each request's first-token latency from its "Token_Latency"
events. Both are checked against the result_* keys of mlperf_log_detail.txt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass
class LoadGenSample:
    """One sample as LoadGen's trace has it, in nanoseconds on LoadGen's clock (origin: the trace's start)."""

    scheduled_ns: int
    latency_ns: int  # scheduled -> QuerySamplesComplete
    first_token_ns: int | None = None  # scheduled -> FirstTokenComplete
    index: int = 0  # the sample's index in the query sample library (which request it was)

    @property
    def done_ns(self) -> int:
        return self.scheduled_ns + self.latency_ns


@dataclass
class LoadGenLog:
    samples: list[LoadGenSample]  # in LoadGen's sample sequence (issue) order
    results: dict[str, Any]  # the detail log's keys, last value of each
    errors: list[str]  # the detail log's error entries

    def ended_early(self, reason: str) -> bool:
        return any(f"Ending early: {reason}" in e for e in self.errors)

    @property
    def too_short(self) -> bool:
        """LoadGen's own verdict that the run missed the minimum duration or query count."""
        return False in (self.results.get("result_min_duration_met"), self.results.get("result_min_queries_met"))

    @property
    def wall_ns(self) -> int:
        return max(s.done_ns for s in self.samples) - min(s.scheduled_ns for s in self.samples)


def read_trace(path: str) -> list[LoadGenSample]:
    """The per-sample events of a LoadGen trace. Only the lines needed are parsed: a long run's trace holds
    several scope events per query."""
    begins: list[tuple[int, float, int, int]] = []
    first_tokens: dict[float, int] = {}  # keyed by the query's scheduled time, as LoadGen writes it
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith('{"name":"Sample"') and '"ph":"b"' in line:
                event = json.loads(line.rstrip().rstrip(","))
                args = event["args"]
                begins.append((args["sample_seq"], event["ts"], args["complete_ns"], args["sample_idx"]))
            elif line.startswith('{"name":"Token_Latency"'):
                event = json.loads(line.rstrip().rstrip(","))
                first_tokens[event["ts"]] = event["args"]["issue_delay"] + event["args"]["issue_to_done"]
    begins.sort()
    return [LoadGenSample(round(ts * 1e3), latency, first_tokens.get(ts), index) for _, ts, latency, index in begins]


def read_detail(path: str) -> tuple[dict[str, Any], list[str]]:
    results, errors = {}, []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith(":::MLLOG "):
                entry = json.loads(line[len(":::MLLOG "):])
                results[entry["key"]] = entry["value"]
                if entry.get("metadata", {}).get("is_error"):
                    errors.append(str(entry["value"]))
    return results, errors


def check_trace_against_summary(samples: list[LoadGenSample], results: dict[str, Any]) -> None:
    """The trace is read by us; LoadGen's own summary is not. If they disagree, our reading is wrong."""
    if not samples:
        raise RuntimeError("LoadGen's trace holds no samples")
    pairs = [("result_min_latency_ns", min(s.latency_ns for s in samples)),
             ("result_max_latency_ns", max(s.latency_ns for s in samples))]
    first = [s.first_token_ns for s in samples if s.first_token_ns is not None]
    if first and "result_first_token_min_latency_ns" in results:
        pairs += [("result_first_token_min_latency_ns", min(first)), ("result_first_token_max_latency_ns", max(first))]
    wrong = [f"{key} {results.get(key)} vs trace {value}" for key, value in pairs if results.get(key) != value]
    if wrong:
        raise RuntimeError(f"LoadGen's trace disagrees with its detail log: {'; '.join(wrong)}")
