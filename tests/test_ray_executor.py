"""The `ray` executor on a real Ray cluster started here (two raylets on this machine, two node kinds):
one record per point per target with its node, lost workers and nodes become records, resume, one point
per node at a time. Also targets in suites and plans, and the refusals that need no cluster.

Ray is imported inside the tests only: spawned children import this module to find `child_environment`, and
must not get Ray from it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

import bench
from bench.cli import main
from bench.config import load_suite
from bench.errors import ConfigError
from bench.plan import build_plan
from bench.records.store import load_records

from conftest import TINY_BERT, tiny_suite

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason='Ray is not installed (pip install -e ".[cluster]")')

KIND_A = "kind_a"  # a node kind declared as a Ray resource
KIND_B = "bench-kind=b"  # a node kind declared as a Ray node label
FLEET = [KIND_A, KIND_B]


def tiny_fleet_suite(**overrides) -> dict:
    """One tiny encoder, no quality pass: each point is little more than a child's start-up."""
    return tiny_suite(**{"models": [TINY_BERT], "batch_sizes": [1, 2], "quality": {"enabled": False}, **overrides})


# -- targets in suites and plans (no cluster) -----------------------------------------------------------

def test_every_point_runs_once_per_target_and_the_target_is_part_of_its_identity(write_suite):
    path = write_suite(tiny_fleet_suite(targets=FLEET))
    points = build_plan(load_suite(path), path).points
    untargeted = build_plan(load_suite(write_suite(tiny_fleet_suite(), "plain.yaml")), path).points
    assert [p.target for p in points] == [KIND_A, KIND_B, KIND_A, KIND_B]
    assert len({p.point_id for p in points}) == 4
    assert all(p.target is None for p in untargeted)
    assert not {p.point_id for p in points} & {p.point_id for p in untargeted}
    assert "on bench-kind=b" in points[1].label


def test_exclusion_can_name_a_target(write_suite):
    path = write_suite(tiny_fleet_suite(targets=FLEET, exclude=[{"target": KIND_B, "batch_size": 2}]))
    points = build_plan(load_suite(path), path).points
    assert [(p.target, p.batch_size) for p in points] == [(KIND_A, 1), (KIND_B, 1), (KIND_A, 2)]


@pytest.mark.parametrize("targets, words", [(["a=b=c"], "neither a resource"), (["h100", "h100"], "repeated: h100"),
                                            (["bench_slot"], "every node"), (["has space"], "neither a resource"),
                                            ([], "at least 1")])
def test_bad_targets_are_refused_in_one_line(targets, words, write_suite, capsys):
    path = write_suite(tiny_fleet_suite(targets=targets))
    with pytest.raises(ConfigError) as err:
        load_suite(path)
    assert err.value.key.startswith("targets") and words in err.value.problem
    assert main(["run", str(path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_local_executor_refuses_targets_before_writing_anything(write_suite, tmp_path, capsys):
    path = write_suite(tiny_fleet_suite(targets=FLEET))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "targets" in err and "--executor ray" in err and not out.exists()


def test_without_ray_the_ray_executor_names_the_install_command(write_suite, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    assert main(["run", str(write_suite(tiny_fleet_suite())), "--executor", "ray"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "Ray is not installed" in line and 'pip install -e ".[cluster]"' in line


# -- a real cluster -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head of kind A (a resource) and a worker of kind B (a label), one bench slot each. The raylets, and so
    their workers, import this checkout's bench and this folder's modules (PYTHONPATH)."""
    from ray.cluster_utils import Cluster

    here = Path(__file__).resolve().parent
    path = os.pathsep.join([str(Path(bench.__file__).resolve().parents[1]), str(here)])
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTHONPATH", path + os.pathsep + os.environ.get("PYTHONPATH", ""))
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "resources": {"bench_slot": 1, KIND_A: 1},
            "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3}})
        worker = cluster.add_node(num_cpus=1, resources={"bench_slot": 1}, labels={"bench-kind": "b"})
        cluster.kinds = {KIND_A: cluster.head_node, KIND_B: worker}
        cluster.env_path = path
        yield cluster
    import ray

    ray.shutdown()  # a test that failed half-way may have left the driver connected
    cluster.shutdown()


def run_on(cluster, suite_path: Path, cache: Path, *more: str) -> int:
    return main(["run", str(suite_path), "--executor", "ray", "--address", cluster.address, "--cache-dir", str(cache),
                 *more])


FLEET_SUITE = tiny_fleet_suite(name="fleet", targets=FLEET, variants=["fp32", "ort-fp32"], batch_sizes=[1],
                               exclude=[{"variant": "ort-fp32", "target": KIND_B}])  # one ONNX export, on A


@pytest.fixture(scope="module")
def fleet_run(cluster, tmp_path_factory):
    """The two-kind suite run once through `bench run --executor ray` from a fresh working directory."""
    root = tmp_path_factory.mktemp("fleet")
    suite = root / "fleet.yaml"
    suite.write_text(yaml.safe_dump(FLEET_SUITE), encoding="utf-8")
    with pytest.MonkeyPatch.context() as cwd:
        cwd.chdir(root)
        assert run_on(cluster, suite, root / "cache") == 0
    return root, suite


def records_folder(root: Path) -> Path:
    """The one results/<machine_id>/<suite> folder under `root` (every raylet here is the same machine)."""
    (runs,) = (root / "results").rglob("runs.jsonl")
    return runs.parent


def node_of(cluster, kind: str) -> str:
    return cluster.kinds[kind].node_id[:12]


@needs_ray
def test_workers_import_this_checkout_and_children_start_clean(cluster):
    """The worker's bench is this checkout's; the point's child gets the point's thread count (not Ray's
    OMP_NUM_THREADS=1) and neither Ray's worker script nor Ray itself."""
    import ray

    @ray.remote(num_cpus=0)
    def probe():
        import bench as worker_bench
        from bench.executors.ray.node import prepare_child_env, worker_main_hidden
        from bench.isolation.isolate import run_isolated

        ray_default = os.environ.get("OMP_NUM_THREADS")
        prepare_child_env({"settings": {"intra_op_threads": 3}})
        with worker_main_hidden():
            child = run_isolated({}, "", None, 60, target=child_environment, start_method="spawn")
        return worker_bench.__file__, ray_default, child

    ray.init(address=cluster.address)
    try:
        worker_file, ray_default, child = ray.get(probe.remote())
    finally:
        ray.shutdown()
    assert worker_file == bench.__file__
    assert ray_default == "1"  # what the child would inherit without prepare_child_env
    assert child["omp"] == "3" and child["mkl"] == "3"
    assert not child["ray_imported"] and child["main_file"] is None


def child_environment(point_data, cache_dir, log_path, conn, *_):
    """A point's child that reports its start-up environment instead of running the point."""
    main_module = sys.modules.get("__mp_main__") or sys.modules["__main__"]
    conn.send({"omp": os.environ.get("OMP_NUM_THREADS"), "mkl": os.environ.get("MKL_NUM_THREADS"),
               "ray_imported": "ray" in sys.modules, "main_file": getattr(main_module, "__file__", None)})
    conn.close()


@needs_ray
def test_two_targets_give_one_record_per_point_per_target_with_its_node(cluster, fleet_run):
    root, _ = fleet_run
    folder = records_folder(root)
    records = load_records(folder)
    assert all(r.status == "ok" for r in records), [r.error for r in records]
    assert sorted((r.config.target, r.config.variant.name, r.config.batch_size) for r in records) == [
        ("bench-kind=b", "fp32", 1), (KIND_A, "fp32", 1), (KIND_A, "ort-fp32", 1)]
    machine_id = folder.parent.name
    assert folder == root / "results" / machine_id / "fleet" and (folder.parent / "machine.json").exists()
    for r in records:
        assert r.node.endswith(node_of(cluster, r.config.target)), (r.config.target, r.node)
        assert r.machine_id == machine_id and r.provenance.threads == {"intra_op": 1, "inter_op": 1}
        assert r.log.startswith(f"logs/{r.point_id}-") and (folder / r.log).is_file()  # the child's log came home
    # the node's export cache is keyed by its machine, so a shared cache folder never crosses machine kinds
    assert [p.name for p in (root / "cache").iterdir()] == [machine_id]
    assert any((root / "cache" / machine_id / "onnx").glob("*/model.onnx"))


@needs_ray
def test_resume_reruns_only_the_missing_point(cluster, fleet_run, tmp_path, monkeypatch):
    root, suite = fleet_run
    shutil.copytree(root / "results", tmp_path / "results")
    runs = records_folder(tmp_path) / "runs.jsonl"
    lines = runs.read_text().splitlines(keepends=True)
    runs.write_text("".join(lines[:-1]))
    missing = load_records(runs)
    monkeypatch.chdir(tmp_path)
    assert run_on(cluster, suite, tmp_path / "cache", "--resume") == 0
    after = load_records(runs)
    assert len(after) == len(lines)
    dropped = {r.point_id for r in load_records(records_folder(root))} - {r.point_id for r in missing}
    assert {after[-1].point_id} == dropped and after[-1].status == "ok"


@needs_ray
def test_points_never_share_a_node(cluster, write_suite, tmp_path):
    """Untargeted points may go anywhere and the task asks for no CPU: only the bench slot keeps four points
    from running two at a time on each node."""
    path = write_suite(tiny_fleet_suite(batch_sizes=[1, 2, 3, 4]))
    out = tmp_path / "out"
    assert run_on(cluster, path, tmp_path / "cache", "--out", str(out)) == 0
    records = load_records(out)
    assert len(records) == 4 and all(r.status == "ok" for r in records), [r.error for r in records]
    by_node: dict[str, list] = {}
    for r in records:
        by_node.setdefault(r.node, []).append((r.started_at.timestamp(), r.started_at.timestamp() + r.wall_s))
    assert len(by_node) == 2, "both nodes should have taken points"
    for node, spans in by_node.items():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert start >= end, f"two points overlapped on {node}"


def bench_worker(raylet_pid: int | None = None, timeout_s: float = 120):
    """The Ray worker running a point (its title is `ray::bench:<point id>`) once its child has started."""
    import psutil

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for proc in psutil.process_iter(["name", "ppid"]):
            if (proc.info["name"] or "").startswith("ray::bench:") and raylet_pid in (None, proc.info["ppid"]):
                try:
                    if proc.children():
                        return proc
                except psutil.NoSuchProcess:
                    continue
        time.sleep(0.1)
    raise AssertionError("no point started on the cluster")


def still_running(procs: list, within_s: float) -> list:
    """Those of `procs` still running (not gone, not zombies) after waiting up to `within_s`."""
    import psutil

    def running(proc) -> bool:
        try:
            return proc.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + within_s
    while any(running(p) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in procs if running(p)]


@needs_ray
def test_a_killed_worker_becomes_a_failed_record_and_the_rest_finish(cluster, write_suite, tmp_path):
    path = write_suite(tiny_fleet_suite(targets=[KIND_B]))
    out = tmp_path / "out"
    survivors: list = []

    def kill_first_point():
        worker = bench_worker()
        children = worker.children(recursive=True)
        worker.send_signal(signal.SIGKILL)
        survivors.extend(still_running(children, within_s=2))

    killer = threading.Thread(target=kill_first_point)
    killer.start()
    assert run_on(cluster, path, tmp_path / "cache", "--out", str(out)) == 0
    killer.join()
    records = load_records(out)
    assert sorted(r.status for r in records) == ["failed", "ok"]
    (failed,) = [r for r in records if r.status == "failed"]
    assert failed.node.endswith(node_of(cluster, KIND_B)) and failed.node in failed.error
    assert "WorkerCrashedError" in failed.error
    assert not survivors, "the killed worker's child kept running on the node, beside the next point"


@needs_ray
def test_a_node_that_dies_becomes_failed_records_and_other_kinds_finish(cluster, write_suite, tmp_path):
    """Kind C's only node loses its raylet under its first point (as to the OOM killer): that point fails naming
    the node and stops running, the next one (no node of its kind left) fails too, and kind A's points finish."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTHONPATH", cluster.env_path)
        doomed = cluster.add_node(num_cpus=1, resources={"bench_slot": 1, "kind_c": 1})
    path = write_suite(tiny_fleet_suite(targets=[KIND_A, "kind_c"]))
    out = tmp_path / "out"
    survivors: list = []

    def kill_node():
        raylet = doomed.all_processes["raylet"][0].process
        children = bench_worker(raylet.pid).children(recursive=True)
        raylet.kill()  # as the OOM killer or a crash would: nothing of Ray's is left on the node to clean up
        survivors.extend(still_running(children, within_s=5))
        cluster.remove_node(doomed, allow_graceful=False)

    killer = threading.Thread(target=kill_node)
    killer.start()
    assert run_on(cluster, path, tmp_path / "cache", "--out", str(out)) == 0
    killer.join()
    records = load_records(out)
    outcome = {(r.config.target, r.status) for r in records}
    assert len(records) == 4 and outcome == {(KIND_A, "ok"), ("kind_c", "failed")}, [r.error for r in records]
    lost, stranded = sorted((r for r in records if r.status == "failed"), key=lambda r: r.node is None)
    assert lost.node.endswith(doomed.node_id[:12]) and "node died" in lost.error and lost.node in lost.error
    assert stranded.node is None and ("no node of kind 'kind_c' is left" in stranded.error
                                      or "before it started" in stranded.error), stranded.error
    assert not survivors, "the dead node's point kept running"


@needs_ray
def test_a_target_no_node_declares_is_refused_before_anything_runs(cluster, write_suite, tmp_path, capsys):
    path = write_suite(tiny_fleet_suite(targets=[KIND_A, "l40s"]))
    out = tmp_path / "out"
    assert run_on(cluster, path, tmp_path / "cache", "--out", str(out)) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "targets[1]" in line and "'l40s'" in line and "bench_slot" in line and not out.exists()
