"""`bench serve`'s OpenAI-compatible app over HTTP on 127.0.0.1, driven by the `openai` client and by the harness's
own endpoint client, over systems with known behaviour (tests/serving_fakes.py: what is judged is the protocol,
not an engine); and `bench serve` as a command on a tiny saved model."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

import fake_serving
from bench.endpoints.client import EndpointClient, EndpointSettings, token_counter
from bench.endpoints.launch import LaunchedServer, LaunchSpec, free_port
from bench.serve.app import Served, create_app, unit_text
from bench.serving.loads import LoadResult, burst
from bench.serving.metrics import serving_metrics
from bench.serving.slo import Slo
from bench.serving.workload import build_requests
from serving_fakes import PoolSystem
from test_endpoint_client import serving

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tokenizer():
    from bench.endpoints.source import load_tokenizer

    return load_tokenizer("all-minilm-l6-v2")


def served(tokenizer, system=None, task: str = "causal-lm", max_model_len: int | None = 64) -> Served:
    return Served(system=system or PoolSystem(capacity=4, per_token_s=0.001), tokenizer=tokenizer, name="tiny",
                  task=task, max_model_len=max_model_len, describe={"engine": "fake-pool"})


def burst_through_client(url: str, tokenizer, requests) -> tuple[EndpointClient, LoadResult]:
    """The harness's own endpoint client, started, sent every request at once, and stopped."""
    endpoint = EndpointClient(EndpointSettings(url=url, model="tiny"), token_counter(tokenizer))
    endpoint.start()
    try:
        return endpoint, burst(endpoint, requests, deadline_s=30)
    finally:
        endpoint.stop()


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def test_openai_client_reads_completions_streamed_or_not_with_usage(tokenizer):
    with serving(create_app(served(tokenizer))) as url:
        api = client(url)
        whole = api.completions.create(model="tiny", prompt="The quick brown fox", max_tokens=5)
        chunks = list(api.completions.create(model="tiny", prompt=[101, 2000, 2001], max_tokens=4, stream=True,
                                             stream_options={"include_usage": True}))
        several = api.completions.create(model="tiny", prompt=["one prompt", "another prompt"], max_tokens=3)
        models = api.models.list()
    unit = unit_text(tokenizer)
    assert whole.choices[0].text == unit * 5 and whole.choices[0].finish_reason == "length"
    assert whole.usage.completion_tokens == 5 and whole.usage.prompt_tokens == 4       # "the quick brown fox"
    assert len(tokenizer.encode(whole.choices[0].text, add_special_tokens=False)) == 5
    texts = [c.choices[0].text for c in chunks if c.choices and c.choices[0].text]
    assert texts == [unit] * 4 and chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4 and chunks[-1].usage.prompt_tokens == 3
    assert [c.index for c in several.choices] == [0, 1] and several.usage.completion_tokens == 6
    assert [m.id for m in models.data] == ["tiny"]


def test_openai_client_reads_chat_streamed_or_not(tokenizer):
    with serving(create_app(served(tokenizer))) as url:
        api = client(url)
        whole = api.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello there"}],
                                            max_tokens=3)
        chunks = list(api.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                                  max_tokens=3, stream=True, stream_options={"include_usage": True}))
    assert whole.choices[0].message.role == "assistant" and whole.usage.completion_tokens == 3
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].delta.content for c in chunks[1:4]] == [unit_text(tokenizer)] * 3
    assert chunks[4].choices[0].finish_reason == "length" and chunks[-1].usage.completion_tokens == 3


@pytest.mark.parametrize("body, status, words", [
    ({"prompt": "x", "max_tokens": 2, "best_of": 3}, 400, "unknown field 'best_of'"),
    ({"prompt": "x", "max_tokens": 2, "temperature": 0.7}, 400, "temperature"),
    ({"prompt": "x", "max_tokens": 4, "min_tokens": 2}, 400, "send ignore_eos, or min_tokens equal to max_tokens"),
    ({"prompt": "x", "max_tokens": 64}, 400, "exceed the model's 64 positions"),
    ({"prompt": [5, 99999], "max_tokens": 2}, 400, "token id 99999 is outside the vocabulary"),
    ({"prompt": "", "max_tokens": 2}, 400, "the prompt is empty"),
    ({"model": "other", "prompt": "x"}, 404, "does not exist; this server serves 'tiny'"),
])
def test_requests_it_cannot_honour_are_refused_naming_why(tokenizer, body, status, words):
    with serving(create_app(served(tokenizer))) as url:
        answer = httpx.post(f"{url}/v1/completions", json={"model": "tiny", **body}, trust_env=False)
    assert answer.status_code == status and words in answer.json()["error"]["message"]


def test_the_harness_client_sends_every_length_field_and_counts_exactly_what_the_engine_made(tokenizer):
    system = PoolSystem(capacity=4, per_token_s=0.001)
    with serving(create_app(served(tokenizer, system))) as url:
        endpoint, result = burst_through_client(url, tokenizer, build_requests(tokenizer, 6, 8, 5, seed=0))
        described = endpoint.describe()
        metrics = httpx.get(f"{url}/metrics", trust_env=False).text
    assert all(t.ok and t.output_tokens == 5 and sum(n for _, n in t.token_ns) == 5 for t in result.timings)
    assert described["optional_fields"]["dropped"] == {}
    assert described["token_counts"]["compared"] == 6 and described["token_counts"]["disagree"] == 0
    assert 'bench_serve_requests_total{model="tiny",api="completions",outcome="ok"} 6' in metrics
    assert 'bench_serve_output_tokens_total{model="tiny"} 30' in metrics
    assert 'bench_serve_requests_in_flight{model="tiny"} 0' in metrics
    assert re.search(r'bench_serve_time_to_first_token_seconds_bucket\{le="\+Inf"\} 6\n', metrics)
    assert re.search(r'bench_serve_inter_token_seconds_count 24\n', metrics)          # 4 gaps a request


def test_failed_requests_are_counted_and_goodput_falls(tokenizer):
    """An endpoint that fails some requests: each is a failure in the run's metrics (never dropped) and goodput, the
    requests within the SLO per second, counts only the others."""
    slo = Slo(e2e_ms={"p99": 60_000})

    def run(fail) -> tuple:
        with serving(create_app(served(tokenizer, PoolSystem(capacity=4, per_token_s=0.001, fail=fail)))) as url:
            endpoint, result = burst_through_client(url, tokenizer, build_requests(tokenizer, 8, 8, 3, seed=0))
            metrics = httpx.get(f"{url}/metrics", trust_env=False).text
        return serving_metrics(result, endpoint.engine, slo), result, metrics

    clean, _, _ = run(())
    faulty, result, metrics = run({1, 4, 6})
    assert clean.failed_requests == 0 and clean.good_requests == 8
    assert faulty.failed_requests == 3 and faulty.good_requests == 5 and faulty.requests == 8
    # of every request sent, the share served within the SLO: all of them, then 5 of 8
    assert clean.goodput_requests_per_s * clean.duration_s == pytest.approx(8)
    assert faulty.goodput_requests_per_s * faulty.duration_s == pytest.approx(5)
    assert all("the engine failed the request: boom" in t.error for t in result.timings if not t.ok)
    assert 'outcome="error"} 3' in metrics


def test_embeddings_for_an_encoder_and_refused_for_a_causal_lm(tokenizer):
    with serving(create_app(served(tokenizer, task="encoder"))) as url:
        answer = client(url).embeddings.create(model="tiny", input=["one sentence", "and another"])
        refused = httpx.post(f"{url}/v1/completions", json={"model": "tiny", "prompt": "x"}, trust_env=False)
    assert [d.index for d in answer.data] == [0, 1] and answer.usage.prompt_tokens == 4
    assert refused.status_code == 400 and "the completions API needs a causal-lm model" in refused.text


def test_health_answers_once_the_system_started_and_the_system_stops_with_the_server(tokenizer):
    system = PoolSystem(capacity=2)
    with serving(create_app(served(tokenizer, system))) as url:
        assert httpx.get(f"{url}/health", trust_env=False).status_code == 200
        assert httpx.get(f"{url}/version", trust_env=False).json()["version"].startswith("bench serve")
    with pytest.raises(RuntimeError):      # the pool was shut down by the system's stop()
        system.pool.submit(print)


def test_bench_serve_command_serves_a_saved_model_to_the_openai_client(tmp_path):
    from bench.config import ModelSpec
    from bench.endpoints.modeldir import served_model_dir
    from conftest import TINY_GPT2

    folder, weights, _ = served_model_dir(ModelSpec(**TINY_GPT2), 0, tmp_path / "cache")
    command = (f"{sys.executable} {ROOT}/tests/fake_serving.py serve --model-dir {folder} --port {{port}} "
               f"--engine {fake_serving.FAKE_ENGINE} --served-model-name tiny --threads 1 --cache-dir {tmp_path}/c")
    spec = LaunchSpec(command=command, env={"PYTHONPATH": str(ROOT)}, timeout_s=120)
    with LaunchedServer(spec, tmp_path / "serve.log", progress=lambda line: None) as server:
        answer = client(server.url).completions.create(model="tiny", prompt="hello", max_tokens=3)
        described = httpx.get(f"{server.url}/v1/models", trust_env=False).json()["data"][0]
    assert answer.usage.completion_tokens == 3 and weights == "random"
    assert described["max_model_len"] == 256 and described["bench"]["engine"] == fake_serving.FAKE_ENGINE
    assert described["bench"]["variant"] == "fp32" and described["bench"]["backend"] == "pytorch"


def test_bench_serve_refuses_bad_arguments_in_one_line(tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bench.cli", "serve", *args], capture_output=True, text=True,
                              timeout=120, cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})

    neither = run()
    assert neither.returncode == 2 and "give one of: a suite (with --point), --model or --model-dir" in neither.stderr
    engine = run("--model", "random:gpt2", "--engine", "warp", "--port", str(free_port()))
    assert engine.returncode == 2 and "unknown engine 'warp'" in engine.stderr
    assert len(engine.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("backend, engine", [("pytorch", "continuous"), ("onnxruntime", "static")])
def test_bench_serve_serves_real_sessions_within_its_max_model_len(tmp_path, backend, engine):
    """`bench serve` over a real engine and session, as `--model-dir DIR --backend B --engine E --max-model-len 32`
    builds it: the openai client gets exactly the tokens it asked for, a request longer than the limit is refused
    naming it, and the continuous engine's KV cache is sized for the limit, not the model's context (256)."""
    from bench.config import ModelSpec, Suite
    from bench.endpoints.modeldir import served_model_dir
    from bench.plan import build_plan
    from bench.serve.variant import build_served, flag_suite, pick_point
    from conftest import TINY_GPT2

    folder, _, _ = served_model_dir(ModelSpec(**TINY_GPT2), 0, tmp_path / "served")
    plan = build_plan(Suite.model_validate(flag_suite(f"local:{folder}", "fp32", backend, "cpu", 4, 16)), "--model")
    served = build_served(pick_point(plan.points, plan.skipped, None, "--model"), engine, 0.005, tmp_path / "cache",
                          "tiny", 1, max_model_len=32)
    assert served.max_model_len == 32 and served.describe["engine_settings"]["max_sequence_tokens"] == 32
    with serving(create_app(served)) as url:
        answers = [client(url).completions.create(model="tiny", prompt=list(range(10, 10 + n)), max_tokens=6)
                   for n in (4, 12)]
        too_long = httpx.post(f"{url}/v1/completions", json={"model": "tiny", "prompt": list(range(10, 40)),
                                                             "max_tokens": 6}, trust_env=False)
    assert [a.usage.completion_tokens for a in answers] == [6, 6]
    assert [a.usage.prompt_tokens for a in answers] == [4, 12]
    assert too_long.status_code == 400 and "32" in too_long.json()["error"]["message"]


def test_bench_serve_refuses_a_max_model_len_beyond_the_context(tmp_path):
    from bench.config import ModelSpec, Suite
    from bench.endpoints.modeldir import served_model_dir
    from bench.errors import ConfigError
    from bench.plan import build_plan
    from bench.serve.variant import build_served, flag_suite, pick_point
    from conftest import TINY_GPT2

    folder, _, _ = served_model_dir(ModelSpec(**TINY_GPT2), 0, tmp_path / "served")
    plan = build_plan(Suite.model_validate(flag_suite(f"local:{folder}", "fp32", "pytorch", "cpu", 2, 16)), "--model")
    with pytest.raises(ConfigError, match="longer than the model's context"):
        build_served(pick_point(plan.points, plan.skipped, None, "--model"), "static", 0.005, tmp_path / "cache",
                     "tiny", 1, max_model_len=10**6)
