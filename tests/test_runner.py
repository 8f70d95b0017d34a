"""Tiny models end to end through the isolated runner; crashes and timeouts become records; resume."""

from __future__ import annotations

import json

import pytest

import faults
from bench.cli import main
from bench.config import load_suite
from bench.plan import build_plan
from bench.executors import local as local_executor
from bench.records.schema import SCHEMA_VERSION
from bench.records.store import load_records
from bench.isolation.isolate import run_isolated

from conftest import tiny_suite


def test_tiny_models_end_to_end(write_suite, tmp_path, capsys):
    path = write_suite(tiny_suite(scenarios=["latency", "offline"]))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 0
    records = load_records(out)
    assert len(records) == 4 and all(r.status == "ok" for r in records), [r.error for r in records]
    assert {r.config.scenario.name for r in records} == {"single-stream", "offline"}  # `latency` is an alias
    for r in records:
        assert r.schema_version == SCHEMA_VERSION and r.run_id and r.point_id
        assert r.harness.version and r.harness.source_digest
        m = r.metrics
        lat = m.latency
        assert lat.count >= 5 and 0 < lat.min_ms <= lat.p50_ms <= lat.p99_ms <= lat.max_ms
        assert m.throughput.samples_per_s > 0
        assert m.memory.peak_rss_bytes > m.memory.parameter_bytes > 0
        assert r.provenance.weights == "random"
        assert r.provenance.threads == {"intra_op": 1, "inter_op": 1}
        assert r.machine.cpu["model"] and r.machine.libraries["torch"]
        assert r.config.settings.min_iterations == 5
        assert r.phases.scenario_s > 0 and 0 <= r.phases.overhead_fraction <= 1
        assert r.log.startswith(f"logs/{r.point_id}-") and (out / r.log).exists()
    offline = next(r for r in records if r.config.scenario.name == "offline")
    assert offline.metrics.loop.samples == offline.metrics.loop.queries * 2  # every sample issued, batches of 2
    printed = capsys.readouterr().out
    assert "[4/4]" in printed and "overhead:" in printed and "Best variant per model" in printed
    assert "| tiny-gpt2" not in printed  # the wide markdown tables go to report.md, the terminal gets the summary
    assert "| tiny-gpt2" in (out / "report.md").read_text() and (out / "comparison.csv").exists()


def _point(write_suite, **kw):
    path = write_suite(tiny_suite(**kw))
    return build_plan(load_suite(path), path).points[0]


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
@pytest.mark.parametrize("target, words", [(faults.killed, "SIGKILL"), (faults.exits, "status 3")])
def test_child_crash_becomes_failed_outcome(target, words, start_method, write_suite, tmp_path):
    point = _point(write_suite)
    outcome = run_isolated(point.model_dump(mode="json"), str(tmp_path), None, 60, target=target,
                           start_method=start_method)
    assert outcome["status"] == "failed" and words in outcome["error"]


def test_forked_and_spawned_points_give_the_same_kind_of_record(write_suite, tmp_path):
    """The fork server changes how the process starts, not what it measures: both records are ok, carry
    the same provenance keys, and say how they started."""
    point = _point(write_suite)
    outcomes = {m: run_isolated(point.model_dump(mode="json"), str(tmp_path), None, 120, start_method=m)
                for m in ("forkserver", "spawn")}
    assert all(o["status"] == "ok" for o in outcomes.values()), outcomes
    assert {m: o["provenance"]["process"]["start_method"] for m, o in outcomes.items()} == {
        "forkserver": "forkserver", "spawn": "spawn"}
    assert outcomes["forkserver"]["provenance"].keys() == outcomes["spawn"]["provenance"].keys()
    assert outcomes["forkserver"]["provenance"]["threads"] == outcomes["spawn"]["provenance"]["threads"]


def test_child_timeout_is_killed_and_reported(write_suite, tmp_path):
    point = _point(write_suite)
    outcome = run_isolated(point.model_dump(mode="json"), str(tmp_path), None, 1.0, target=faults.hangs)
    assert outcome["status"] == "timeout" and "1 s" in outcome["error"]
    assert outcome["child_wall_s"] < 30


def test_crash_in_one_point_does_not_stop_the_suite_and_resume_skips_ok(write_suite, tmp_path, monkeypatch):
    path = write_suite(tiny_suite(models=[tiny_suite()["models"][0]], batch_sizes=[1, 2]))
    out = tmp_path / "out"
    real = local_executor.run_isolated

    def crash_batch_one(point_data, cache_dir, log_path, timeout_s, **kwargs):
        target = faults.killed if point_data["batch_size"] == 1 else None
        return real(point_data, cache_dir, log_path, timeout_s, **kwargs, **({"target": target} if target else {}))

    monkeypatch.setattr(local_executor, "run_isolated", crash_batch_one)
    assert main(["run", str(path), "--out", str(out)]) == 0
    first = load_records(out)
    assert sorted(r.status for r in first) == ["failed", "ok"]

    monkeypatch.setattr(local_executor, "run_isolated", real)
    assert main(["run", str(path), "--out", str(out), "--resume"]) == 0
    after = load_records(out)
    assert len(after) == 3  # only the failed point ran again; nothing was overwritten
    rerun = after[-1]
    assert rerun.status == "ok" and rerun.config.batch_size == 1
    ok_ids = {r.point_id for r in after if r.status == "ok"}
    assert len(ok_ids) == 2

    report = (out / "comparison.csv").read_text()
    assert "failed" not in report  # the newest record of each point is reported


def test_unrunnable_point_becomes_a_record(write_suite, tmp_path):
    """A hub id that cannot be fetched offline fails in the child; the suite still finishes."""
    path = write_suite(tiny_suite(models=[{"name": "ghost", "source": "hub", "id": "no-such-org/no-such-model",
                                           "task": "encoder"}]))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 0
    (rec,) = load_records(out)
    assert rec.status == "failed" and rec.error
    assert rec.log and (out / rec.log).exists() and rec.point_id in rec.log


def test_cuda_point_is_unsupported_without_cuda(write_suite, tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    path = write_suite(tiny_suite(devices=["cuda"], models=[tiny_suite()["models"][1]]))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 0
    (rec,) = load_records(out)
    assert rec.status == "unsupported" and "CUDA" in rec.error
    json.loads(rec.model_dump_json())


def test_resume_reruns_points_recorded_by_another_harness_version(write_suite, tmp_path, capsys):
    from bench.records.store import append_record

    path = write_suite(tiny_suite(models=[tiny_suite()["models"][0]]))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 0
    (first,) = load_records(out)
    older = first.model_copy(update={"harness": first.harness.model_copy(update={"source_digest": "older"})})
    (out / "runs.jsonl").unlink()
    append_record(out, older)
    capsys.readouterr()
    assert main(["run", str(path), "--out", str(out), "--resume"]) == 0
    assert "re-running 1 point(s) recorded by another harness version" in capsys.readouterr().out
    assert len(load_records(out)) == 2
    assert main(["run", str(path), "--out", str(out), "--resume"]) == 0
    assert "1 of 1 points already ok" in capsys.readouterr().out
    assert len(load_records(out)) == 2


def test_the_runs_headline_names_the_failed_server_check_as_the_report_does():
    """Defect: the line printed after each point said "insufficient sample" for a server run over its latency
    bound, while the report named the failed check."""
    from bench.runner import _headline
    from builders import record, serving_metrics

    over = record(scenario="server", metrics=serving_metrics(checks={"slo": False}, estimate_ms=180.0))
    assert "over the SLO" in _headline(over) and "insufficient sample" not in _headline(over)
