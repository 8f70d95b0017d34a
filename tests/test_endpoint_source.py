"""`source: endpoint` at plan time: its keys validated by the source, its pairing with the endpoint backend by
declaration, what it is skipped for, its identity, and what of it a record keeps."""

from __future__ import annotations

import pytest

from bench.config import ACCESS_CONTEXT, RunPoint, load_suite
from bench.errors import ConfigError
from bench.plan import build_plan
from bench.records.build import make_record, now

import fake_serving  # registers the requests scenario the endpoint points run
from conftest import TINY_GPT2, tiny_suite

RUNNING = {"name": "remote", "source": "endpoint", "url": "http://10.0.0.5:8000", "model": "llama",
           "tokenizer": "all-minilm-l6-v2", "server_machine": "h100-vllm"}
LAUNCHED = {"name": "launched", "source": "endpoint", "model": "tiny", "serves": {k: v for k, v in TINY_GPT2.items()
                                                                                  if k != "name"},
            "launch": {"command": "bench serve --model-dir {model_dir} --port {port}"}}


def plan_of(write_suite, models, **overrides):
    path = write_suite(tiny_suite(models=models, **overrides))
    return build_plan(load_suite(path), path)


def refused(write_suite, models, **overrides) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        plan_of(write_suite, models, **overrides)
    return info.value


def test_endpoint_points_run_on_the_endpoint_backend_only_and_serving_scenarios_only(write_suite):
    plan = plan_of(write_suite, [TINY_GPT2, RUNNING], backends=["pytorch", "onnxruntime"], variants=["fp32", "bf16"],
                   scenarios=["single-stream", fake_serving.BURST])
    endpoint = [p for p in plan.points if p.model.name == "remote"]
    assert [(p.backend, p.variant.name, p.scenario.name) for p in endpoint] == [("endpoint", "fp32",
                                                                                 fake_serving.BURST)]
    assert {p.backend for p in plan.points if p.model.name == "tiny-gpt2"} == {"pytorch", "onnxruntime"}
    reasons = {label: reason for label, reason in plan.skipped if label.startswith("remote")}
    assert "does not send requests" in reasons["remote · endpoint · cpu · fp32 · single-stream · b2 s16"]
    # the plan names the engine each serving point runs through: the endpoint's own
    assert "applies no variant" in reasons[f"remote · endpoint · cpu · bf16 · {fake_serving.BURST}(engine=endpoint) · b2 s16"]
    (point,) = endpoint
    assert point.task == "causal-lm" and point.weights == "served"


def test_launched_endpoint_serving_a_random_model_has_its_weights_and_task(write_suite):
    (point,) = plan_of(write_suite, [LAUNCHED], scenarios=[fake_serving.BURST]).points
    assert point.weights == "random" and point.task == "causal-lm"


def test_an_engine_the_endpoint_does_not_serve_is_skipped_with_the_reason(write_suite):
    plan = plan_of(write_suite, [RUNNING], scenarios=[{"name": fake_serving.BURST, "options": {"engine": "static"}}])
    assert plan.points == [] and "with the static engine (it serves endpoint)" in plan.skipped[0][1]


def test_the_endpoint_backend_is_refused_in_the_suites_backends(write_suite):
    error = refused(write_suite, [TINY_GPT2], backends=["pytorch", "endpoint"])
    assert error.key == "backends[1]" and "runs only the models of a source that names it" in error.problem


@pytest.mark.parametrize("change, key, words", [
    ({"url": None}, "models[0]", "give either url"),
    ({"server_machine": None}, "models[0]", "needs server_machine"),
    ({"tokenizer": None}, "models[0]", "give tokenizer"),
    ({"tokenizer": "/no/such/folder"}, "models[0]", "neither a folder nor a packaged model"),
    ({"url": "http://h:8000/v1"}, "models[0].url", "without /v1"),
    ({"api": "rerank"}, "models[0].api", "'completions', 'chat' or 'embeddings'"),
    ({"temperature": 0}, "models[0].temperature", "Extra inputs are not permitted"),
    ({"id": "llama"}, "models[0].id", "takes no id"),
    ({"launch": {"command": "x --port {port}"}}, "models[0]", "give either url"),
    ({"serves": {"source": "random", "id": "gpt2"}}, "models[0]", "needs launch"),
    ({"api_key_env": "BENCH_TEST_UNSET_KEY"}, "models[0]", "BENCH_TEST_UNSET_KEY (api_key_env) is not set"),
])
def test_bad_endpoint_entries_are_one_line_errors(write_suite, change, key, words):
    entry = {k: v for k, v in {**RUNNING, **change}.items() if v is not None}
    error = refused(write_suite, [entry], scenarios=[fake_serving.BURST])
    assert error.key == key and words in error.problem


def test_a_launch_with_model_dir_needs_serves_and_serves_is_checked_by_its_source(write_suite):
    no_serves = {k: v for k, v in LAUNCHED.items() if k != "serves"}
    assert "say which with serves" in refused(write_suite, [{**no_serves, "tokenizer": "all-minilm-l6-v2"}],
                                                             scenarios=[fake_serving.BURST]).problem
    bad_arch = {**LAUNCHED, "serves": {"source": "random", "id": "gpt5"}}
    assert "unknown architecture 'gpt5'" in refused(write_suite, [bad_arch], scenarios=[fake_serving.BURST]).problem
    encoder = {**LAUNCHED, "serves": {"source": "random", "id": "minilm-l6"}}
    assert "the completions API serves causal-lm models" in refused(write_suite, [encoder],
                                                                     scenarios=[fake_serving.BURST]).problem


def test_headers_and_key_variable_are_not_identity_and_their_values_never_reach_a_record(write_suite, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-never-written")
    plain = plan_of(write_suite, [RUNNING], scenarios=[fake_serving.BURST]).points[0]
    with_access = plan_of(write_suite, [{**RUNNING, "headers": {"X-Token": "hunter2"}, "api_key_env": "MY_KEY"}],
                          scenarios=[fake_serving.BURST]).points[0]
    other_url = plan_of(write_suite, [{**RUNNING, "url": "http://10.0.0.6:8000"}], scenarios=[fake_serving.BURST])
    assert with_access.point_id == plain.point_id != other_url.points[0].point_id
    assert with_access.model.access == {"headers": {"X-Token": "hunter2"}, "api_key_env": "MY_KEY"}
    assert "headers" not in with_access.model.options
    record = make_record(with_access, {"status": "failed", "error": "x"}, {"machine_id": "m"}, now(), 1.0, "s")
    written = record.model_dump_json()
    assert "hunter2" not in written and "MY_KEY" not in written and "X-Token" in written
    child = RunPoint.model_validate(with_access.model_dump(mode="json", context=ACCESS_CONTEXT))
    assert child.model.access["headers"] == {"X-Token": "hunter2"} and child.point_id == plain.point_id


def test_points_of_other_sources_keep_their_identity():
    """Existing points' ids do not change with the endpoint source's keys (no empty options or access dumped)."""
    point = RunPoint.model_validate({
        "suite": "s", "model": {"name": "m", "source": "random", "id": "gpt2"}, "task": "causal-lm",
        "weights": "random", "backend": "pytorch", "device": "cpu", "variant": {"name": "fp32"},
        "scenario": {"name": "single-stream"}, "batch_size": 1, "seq_len": 8, "settings": {}})
    assert set(point.model_dump(mode="json")["model"]) == {"name", "source", "id", "task", "overrides", "revision",
                                                           "gguf_file", "teacher"}


def test_the_registries_find_the_endpoint_pieces_without_importing_a_web_framework():
    """A plan walks bench/endpoints for sources, backends and engines; FastAPI and uvicorn are `bench serve`'s
    (an extra), so walking must not need them."""
    import subprocess
    import sys

    code = ("import sys; from bench.models import model_sources; from bench.backends import backends; "
            "from bench.serving.engines import engines; "
            "assert 'endpoint' in model_sources and 'endpoint' in backends and 'endpoint' in engines; "
            "print(sorted(m for m in ('fastapi', 'starlette', 'uvicorn') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
