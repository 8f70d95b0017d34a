"""Endpoint points end to end, `bench run` to record, with real servers on 127.0.0.1: `bench serve` launched on the
point's own weights, a running endpoint on a declared machine, launch failures, a point that overruns its timeout,
and credentials that reach no file. Most run the one-burst scenario and the model-free engine of
tests/fake_serving.py (what is judged is the path, not a model); the shipped suite's test runs the real ones.
Nothing of a server may outlive its point."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import psutil
import pytest

import fake_serving
from bench.analysis.frame import records_frame
from bench.cli import main
from bench.endpoints.launch import LaunchedServer, LaunchSpec, group_members
from bench.executors import local as local_executor
from bench.records.store import load_records
from conftest import TINY_GPT2, tiny_suite

ROOT = Path(__file__).resolve().parents[1]
ENV = {"PYTHONPATH": str(ROOT)}
TINY = {k: v for k, v in TINY_GPT2.items() if k != "name"}


def marked(command: str) -> tuple[str, str]:
    """The command with a unique word in it (the served model's name where it takes one), to find any process of
    it left behind."""
    marker = f"bench-test-{uuid.uuid4().hex[:10]}"
    if "{model}" in command:
        return command.replace("{model}", marker), marker
    return f"{command} {marker}", marker


def left_behind(marker: str) -> list[str]:
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(process.info["cmdline"] or ())
        if marker in cmdline and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(cmdline)
    return found


BENCH_SERVE = (f"{sys.executable} {ROOT}/tests/fake_serving.py serve --model-dir {{model_dir}} --port {{port}} "
               f"--engine {fake_serving.FAKE_ENGINE} --threads 1 --served-model-name {{model}}")
NULL_SERVER = f"{sys.executable} -m bench.endpoints.nullserver --port {{port}} --model {{model}}"


def launched(command: str, model: str, serves: dict | None = None, **launch) -> dict:
    """An endpoint entry whose point launches `command`, serving `serves` (else the null server's nothing)."""
    entry = {"name": "ep", "source": "endpoint", "model": model,
             "launch": {"command": command, "env": ENV, "timeout_s": 60, "stop_grace_s": 2, **launch}}
    return {**entry, "serves": serves} if serves else {**entry, "tokenizer": "all-minilm-l6-v2"}


@pytest.fixture
def run_endpoint(write_suite, tmp_path, monkeypatch):
    """`bench run` of one endpoint model through the local executor, its children with the fakes registered."""
    real = local_executor.run_isolated
    monkeypatch.setattr(local_executor, "run_isolated",
                        lambda *args, **kw: real(*args, **kw, target=fake_serving.child_main))

    def run(model: dict, timeout_s: float = 120, start_method: str = "forkserver", **options):
        suite = tiny_suite(models=[model], scenarios=[{"name": fake_serving.BURST, "options": options}])
        suite["defaults"]["timeout_s"] = timeout_s
        out = tmp_path / "out"
        assert main(["run", str(write_suite(suite)), "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                     "--start-method", start_method]) == 0
        (record,) = load_records(out)
        return record, out

    return run


def test_bench_serve_launched_on_the_points_own_weights_end_to_end(run_endpoint):
    command, marker = marked(BENCH_SERVE)
    record, out = run_endpoint(launched(command, marker, serves=TINY))
    assert record.status == "ok", record.error
    assert record.config.backend == "endpoint" and record.provenance.weights == "random"
    assert record.metrics.loop.queries == 8 and record.metrics.sufficient       # 8 requests, none failed
    assert record.metrics.memory is None and record.metrics.work is None and record.metrics.quality is None
    served = record.provenance.model_extra["served_model"]
    folder = Path(served["model_dir"])
    assert served["source"] == "random:gpt2" and served["seed"] == 0 and served["model_dir_cache"] == "built"
    assert {"config.json", "model.safetensors", "tokenizer.json", "bench-served.json"} <= {p.name for p in
                                                                                         folder.iterdir()}
    session = record.provenance.backend
    launch = session.properties["launched"]
    assert launch["command"].startswith(sys.executable) and f"--model-dir {folder}" in launch["command"]
    assert launch["startup_s"] > 0 and launch["stopped"] == "SIGTERM" and launch["env"] == ["PYTHONPATH"]
    assert session.engine_version.startswith("bench serve") and session.properties["server"]["models"] == [marker]
    assert session.properties["client"]["runs"] == 1 and session.precision == "as served"
    server_log = out / record.log.replace(".log", ".server.log")
    assert Path(launch["log"]) == server_log and f"bench serve: {marker}" in server_log.read_text()
    assert "server ready on" in (out / record.log).read_text()
    assert left_behind(marker) == []


def test_a_running_endpoint_is_recorded_on_its_declared_machine(run_endpoint, tmp_path):
    spec = LaunchSpec(command=NULL_SERVER.replace("{model}", "null"), env=ENV, timeout_s=60)
    with LaunchedServer(spec, tmp_path / "null.log", progress=lambda line: None) as server:
        record, _ = run_endpoint({"name": "remote", "source": "endpoint", "url": server.url, "model": "null",
                                  "tokenizer": "all-minilm-l6-v2",
                                  "server_machine": {"machine_id": "gpu-box", "gpu": "H100 SXM"}})
    assert record.status == "ok", record.error
    assert record.provenance.weights == "served"
    assert record.provenance.server_machine == {"machine_id": "gpu-box", "gpu": "H100 SXM"}
    assert record.machine_id != "gpu-box" and "launched" not in record.provenance.backend.properties
    (row,) = records_frame([record]).to_dict("records")
    assert row["machine"] == "gpu-box" and row["client_machine"] == record.machine_id
    assert row["variant"] == "as served"     # its point's variant is `fp32`, which the server may not run


@pytest.mark.parametrize("command, options, words", [
    ("/nonexistent/server --port {port}", {}, "cannot start '/nonexistent/server'"),
    (f"{sys.executable} -c \"import time; print('loading weights', flush=True); time.sleep(60)\"",
     {"timeout_s": 2}, "did not answer 200 on /health within 2 s(.|\n)*loading weights"),
    (f"timeout 6 {NULL_SERVER}", {}, "exited with status 124 while in use(.|\n)*last lines of"),
])
def test_a_server_that_cannot_start_never_gets_ready_or_dies_in_use_fails_the_point_and_leaves_nothing(
        run_endpoint, command, options, words):
    import re

    command, marker = marked(command)
    record, _ = run_endpoint(launched(command, marker, **options), hang_s=12)
    assert record.status == "failed" and re.search(words, record.error), record.error
    assert left_behind(marker) == []


# the null server, with a worker in its process group that ignores SIGTERM (as a model server's engine process may)
WITH_WORKER = (f"{sys.executable} -c \"import subprocess, sys; subprocess.Popen([sys.executable, '-c', "
               f"'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)', "
               f"sys.argv[-1]]); from bench.endpoints.nullserver import main; main()\" --port {{port}} "
               f"--model {{model}}")


def test_a_point_past_its_timeout_leaves_no_server_nor_its_workers(run_endpoint):
    command, marker = marked(WITH_WORKER)
    record, out = run_endpoint(launched(command, marker), timeout_s=20, hang_s=600)
    assert record.status == "timeout"
    assert "server ready on" in (out / record.log).read_text()
    assert left_behind(marker) == []


def test_credentials_reach_no_record_log_or_report(run_endpoint, monkeypatch, tmp_path):
    secrets = {"key": "sk-endpoint-5a4b3c2d1e", "header": "hdr-7f6e5d4c", "env": "env-1a2b3c4d"}
    monkeypatch.setenv("BENCH_TEST_ENDPOINT_KEY", secrets["key"])
    command, marker = marked(NULL_SERVER)
    model = {**launched(command, marker, env={**ENV, "BENCH_SERVER_TOKEN": secrets["env"]}),
             "api_key_env": "BENCH_TEST_ENDPOINT_KEY", "headers": {"X-Api-Key": secrets["header"]}}
    record, out = run_endpoint(model, start_method="spawn")   # a fork server started earlier has not the key
    assert record.status == "ok", record.error
    client = record.provenance.backend.properties["client"]
    assert client["headers"] == ["X-Api-Key"] and client["api_key_env"] == "BENCH_TEST_ENDPOINT_KEY"
    written = [path for path in [*out.rglob("*"), *(tmp_path / "cache").rglob("*")] if path.is_file()]
    assert any(path.name.endswith(".server.log") for path in written) and any(p.name == "runs.jsonl" for p in written)
    for path in written:
        text = path.read_bytes().decode("utf-8", errors="replace")
        assert not [name for name, value in secrets.items() if value in text], path
    assert json.loads((out / "runs.jsonl").read_text())["config"]["model"]["access"] == {
        "api_key_env": "(not recorded)", "headers": {"X-Api-Key": "(not recorded)"},
        "launch": {"env": {"BENCH_SERVER_TOKEN": "(not recorded)", "PYTHONPATH": "(not recorded)"}}}


def test_transformers_serve_with_continuous_batching_launched_on_the_points_weights(run_endpoint):
    """A server the harness does not own: it names the model by its folder, refuses ignore_eos and min_tokens (422)
    and ends its streams without [DONE]; the client retries without the fields, says so, and counts every token."""
    command = (f"{Path(sys.executable).parent / 'transformers'} serve {{model_dir}} --host {{host}} --port {{port}} "
               "--device cpu --continuous-batching")
    serves = {**TINY, "overrides": {**TINY["overrides"], "vocab_size": 30522}}   # every id is a tokenizer's word
    model = {"name": "ep", "source": "endpoint", "model": "{model_dir}", "serves": serves,
             "launch": {"command": command, "env": {"HF_HUB_OFFLINE": "1"}, "timeout_s": 240, "stop_grace_s": 10}}
    record, _ = run_endpoint(model, timeout_s=400, requests=4, output_tokens=4)
    assert record.status == "ok", record.error
    assert record.metrics.loop.served.samples == 4 and record.metrics.loop.served.tokens == 16
    properties = record.provenance.backend.properties
    client = properties["client"]
    assert set(client["optional_fields"]["dropped"]) == {"ignore_eos", "min_tokens"}
    assert "Unexpected fields" in client["optional_fields"]["dropped"]["ignore_eos"]
    assert client["token_counts"]["ended_without_done"] == 4 and client["token_counts"]["without_usage"] == 0
    assert properties["model"] == record.provenance.model_extra["served_model"]["model_dir"]
    assert properties["launched"]["stopped"] in ("SIGTERM", "SIGKILL")
    assert group_members(properties["launched"]["pid"]) == []      # the server and its batching worker


def test_the_shipped_endpoint_suite_runs_offline_launching_bench_serve_on_the_same_weights(tmp_path):
    out = tmp_path / "out"
    assert main(["run", "endpoint", "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    records = load_records(out)
    assert records and all(r.status == "ok" for r in records), [r.error for r in records]
    served = [r for r in records if r.config.backend == "endpoint"]
    assert served and all(r.provenance.weights == "random" for r in served)
    assert {r.config.model.name for r in records} == {"tiny-gpt2", "tiny-gpt2-http"}
    # paired: the in-process engine and the server got prefixes of one request sequence
    assert len({r.provenance.workload.sequence for r in records}) == 1
