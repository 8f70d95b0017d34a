"""runs.jsonl after a crash, and which record of a point is its newest."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest

from builders import HARNESS, record

from bench.errors import ConfigError
from bench.records.store import RUNS_FILE, append_record, latest_per_point, load_records, resume_state


def _killed_mid_line(runs, text: str) -> None:
    """A real writer killed (SIGKILL) after it wrote `text`, the start of a line, and before the rest."""
    writer = subprocess.Popen(
        [sys.executable, "-c", "import os, sys, time\n"
         "with open(sys.argv[1], 'a', encoding='utf-8') as fh:\n"
         "    fh.write(sys.argv[2]); fh.flush(); os.fsync(fh.fileno())\n"
         "    print('written', flush=True); time.sleep(60)", str(runs), text],
        stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "written\n"
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()


def test_torn_last_line_does_not_swallow_next_append(tmp_path):
    """A writer killed mid-record leaves a fragment with no newline: the next records are neither glued onto it
    (and lost) nor make every later read fail; `--resume` still sees every good record."""
    append_record(tmp_path, record("a"))
    append_record(tmp_path, record("b"))
    line = record("c").model_dump_json()
    _killed_mid_line(tmp_path / RUNS_FILE, line[: len(line) // 2])
    append_record(tmp_path, record("d"))
    assert [r.point_id for r in load_records(tmp_path)] == ["a", "b", "d"]
    append_record(tmp_path, record("e"))
    assert [r.point_id for r in load_records(tmp_path)] == ["a", "b", "d", "e"]
    assert resume_state(tmp_path, HARNESS) == ({"a", "b", "d", "e"}, set())
    assert (tmp_path / RUNS_FILE).read_text(encoding="utf-8").count("\n") == 4  # the fragment is cut away


def test_torn_line_cut_mid_character_is_cut_away(tmp_path):
    append_record(tmp_path, record("a"))
    with open(tmp_path / RUNS_FILE, "ab") as fh:
        fh.write('{"schema_version":2,"error":"é'.encode()[:-1])  # half of a two-byte character
    assert [r.point_id for r in load_records(tmp_path)] == ["a"]
    append_record(tmp_path, record("b"))
    assert [r.point_id for r in load_records(tmp_path)] == ["a", "b"]


def test_a_record_that_lost_only_its_newline_is_kept(tmp_path):
    """A crash between a record and its newline leaves a whole record: it ends its line, it is not cut."""
    append_record(tmp_path, record("a"))
    _killed_mid_line(tmp_path / RUNS_FILE, record("b").model_dump_json())
    append_record(tmp_path, record("c"))
    assert [r.point_id for r in load_records(tmp_path)] == ["a", "b", "c"]


def test_a_record_glued_to_a_torn_one_is_not_deleted_by_the_fix(tmp_path):
    """Files an older bench wrote may hold a fragment with a whole record glued on: the error says to cut the
    fragment, not to delete the line (and the good record with it)."""
    fragment = record("a").model_dump_json()[:40]
    (tmp_path / RUNS_FILE).write_text(fragment + record("b").model_dump_json() + "\n" + record("c").model_dump_json()
                                      + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_records(tmp_path)
    assert f"delete its first {len(fragment)} characters" in str(err.value)
    assert "remove the damaged line" not in str(err.value)


def test_latest_record_is_the_newest_not_the_last_read():
    """Two folders read newest first (`bench report NEW OLD`, or folders sorted by name): the newest record by
    its start time is the point's row; records started at the same time keep read order."""
    start = record("a").started_at
    newer = record("a", p50=50).model_copy(update={"started_at": start + timedelta(hours=1)})
    older = record("a", p50=100)
    other = record("b")
    latest = latest_per_point([newer, other, older])
    assert [r.point_id for r in latest] == ["a", "b"]
    assert latest[0].metrics.latency.p50_ms == 50
    tied = record("a", p50=70).model_copy(update={"started_at": newer.started_at})
    assert latest_per_point([newer, tied])[0].metrics.latency.p50_ms == 70
