"""The OpenAI-compatible endpoint client over real HTTP on 127.0.0.1: the null server launched as a process, and
small FastAPI apps (served by uvicorn in a thread) for what a real server may do wrong."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import random
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi import Request as HTTPRequest
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from bench.endpoints.client import WINDOW_CHARS, EndpointClient, EndpointSettings, _StreamCounter
from bench.endpoints.launch import LaunchedServer, LaunchSpec, free_port
from bench.endpoints.nullserver import VERSION, respond
from bench.errors import ConfigError
from bench.serving.requests import Completion, Request

ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk-test-9f8e7d6c5b4a"


def words(text: str) -> int:
    """The tests' tokenizer: one token per whitespace-separated word (the null server streams one word a chunk)."""
    return len(text.split())


def request(index: int, output_tokens: int = 6, **fields) -> Request:
    return Request(index=index, prompt_ids=(11, 12, 13), output_tokens=output_tokens,
                   prompt_text=f"prompt number {index}", **fields)


@dataclass
class Trace:
    tokens: list[tuple[int, int]] = field(default_factory=list)   # (ns, count) per on_token
    done: list[tuple[int, Completion]] = field(default_factory=list)


class Driver:
    """Submits as a load generator does and records the callbacks with their own timestamps; on leaving, stops the
    client and checks every request got on_done exactly once and no token after it."""

    def __init__(self, settings: EndpointSettings, count_tokens=words):
        self.client = EndpointClient(settings, count_tokens)
        self.events: queue.Queue = queue.Queue()
        self.traces: dict[int, Trace] = {}

    def __enter__(self) -> Driver:
        self.client.start()
        return self

    def __exit__(self, *exc) -> None:
        self.client.stop()
        self._drain(block=False)
        assert all(len(trace.done) == 1 for trace in self.traces.values())

    def submit(self, *requests: Request) -> None:
        for req in requests:
            self.traces[req.index] = Trace()
            self.client.submit(req, lambda n, i=req.index: self.events.put((i, time.perf_counter_ns(), n)),
                               lambda c, i=req.index: self.events.put((i, time.perf_counter_ns(), c)))

    def wait(self, timeout_s: float = 20.0) -> dict[int, Completion]:
        deadline = time.monotonic() + timeout_s
        while not all(trace.done for trace in self.traces.values()):
            assert time.monotonic() < deadline, "requests never completed"
            self._drain(block=True)
        return {index: trace.done[0][1] for index, trace in self.traces.items()}

    def _drain(self, block: bool) -> None:
        while True:
            try:
                index, ns, what = self.events.get(timeout=0.5) if block else self.events.get_nowait()
            except queue.Empty:
                return
            trace = self.traces[index]
            if isinstance(what, Completion):
                trace.done.append((ns, what))
            else:
                assert not trace.done, "a token came after on_done"
                trace.tokens.append((ns, what))
            block = False


@contextmanager
def serving(app: FastAPI):
    """The app on a free port of 127.0.0.1, served by uvicorn in a thread of this process."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def recording_app(behaviour=None):
    """An OpenAI-compatible app that records what it receives: (api, headers, body) per request. `behaviour(api,
    body)` may return a Response to answer instead of the null server's."""
    app, seen = FastAPI(), []

    def route(api: str):
        async def answer(http: HTTPRequest) -> Response:
            body = await http.json()
            seen.append((api, dict(http.headers), body))
            return (behaviour(api, body) if behaviour else None) or respond(body, api)
        return answer

    app.post("/v1/completions")(route("completions"))
    app.post("/v1/chat/completions")(route("chat"))

    @app.get("/v1/models")
    async def models(http: HTTPRequest) -> dict:
        seen.append(("models", dict(http.headers), None))
        return {"object": "list", "data": [{"id": "m", "object": "model", "owned_by": "test"}]}

    return app, seen


@pytest.fixture(scope="module")
def null_server(tmp_path_factory):
    spec = LaunchSpec(command=f"{sys.executable} -m bench.endpoints.nullserver --port {{port}} --model tiny",
                      env={"PYTHONPATH": str(ROOT)}, timeout_s=60)
    with LaunchedServer(spec, tmp_path_factory.mktemp("null") / "server.log", progress=lambda line: None) as server:
        yield server


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_streams_from_the_launched_null_server_give_tokens_before_done_and_usage(null_server, api):
    with Driver(EndpointSettings(url=null_server.url, model="tiny", api=api)) as driver:
        driver.submit(*(request(i, output_tokens=5 + i) for i in range(4)))
        completions = driver.wait()
        described = driver.client.describe()
    for index, completion in completions.items():
        trace = driver.traces[index]
        assert completion.error is None
        assert completion.output_tokens == 5 + index
        assert completion.info["usage_tokens"] == completion.info["tokenizer_tokens"] == 5 + index
        assert completion.info["streamed_tokens"] == sum(n for _, n in trace.tokens) == 5 + index
        assert completion.info["finish_reason"] == "length"
        assert [n for _, n in trace.tokens] == [1] * (5 + index)      # one word a chunk, each its own event
        assert max(ns for ns, _ in trace.tokens) <= trace.done[0][0]  # the first token (TTFT) long before done
    assert described["server"]["version"] == VERSION and described["server"]["models"] == ["tiny"]
    assert described["token_counts"] == {"compared": 4, "disagree": 0, "largest_difference": 0,
                                         "without_usage": 0, "short": 0, "ended_without_done": 0}
    assert described["optional_fields"] == {"sent": ["stream_options", "ignore_eos", "min_tokens"], "dropped": {}}


def test_embeddings_complete_without_tokens(null_server):
    with Driver(EndpointSettings(url=null_server.url, model="tiny", api="embeddings"), count_tokens=None) as driver:
        driver.submit(request(0, output_tokens=0), request(1, output_tokens=0))
        completions = driver.wait()
    assert all(c.error is None and c.output_tokens == 0 for c in completions.values())
    assert all(not trace.tokens for trace in driver.traces.values())
    assert completions[0].info["usage_prompt_tokens"] == 3


def test_without_usage_the_tokenizer_count_is_the_output_length(null_server):
    settings = EndpointSettings(url=null_server.url, model="tiny", optional_fields=["ignore_eos", "min_tokens"])
    with Driver(settings) as driver:
        driver.submit(request(0, output_tokens=7))
        (completion,) = driver.wait().values()
        described = driver.client.describe()
    assert completion.info["usage_tokens"] is None and completion.output_tokens == 7
    assert described["token_counts"]["without_usage"] == 1 and described["token_counts"]["compared"] == 0


def test_usage_is_the_output_length_and_disagreement_with_the_tokenizer_is_tallied(null_server):
    def doubling(text: str) -> int:
        return 2 * words(text)

    with Driver(EndpointSettings(url=null_server.url, model="tiny"), count_tokens=doubling) as driver:
        driver.submit(request(0, output_tokens=4), request(1, output_tokens=6))
        completions = driver.wait()
        counts = driver.client.describe()["token_counts"]
    assert [c.output_tokens for c in completions.values()] == [4, 6]
    assert [c.info["tokenizer_tokens"] for c in completions.values()] == [8, 12]
    assert counts["compared"] == 2 and counts["disagree"] == 2 and counts["largest_difference"] == 6


def test_bodies_carry_text_or_ids_max_tokens_and_length_fields_only_when_asked():
    app, seen = recording_app()
    with serving(app) as url:
        with Driver(EndpointSettings(url=url, model="m", prompt="ids", extra_body={"temperature": 0})) as driver:
            driver.submit(request(0, output_tokens=3), request(1, output_tokens=4, ignore_eos=False))
            driver.wait()
        with Driver(EndpointSettings(url=url, model="m", api="chat")) as driver:
            driver.submit(request(2, output_tokens=5))
            driver.wait()
    bodies = {body["max_tokens"]: body for api, _, body in seen if api != "models"}
    assert bodies[3]["prompt"] == [11, 12, 13] and bodies[3]["temperature"] == 0 and bodies[3]["stream"] is True
    assert bodies[3]["stream_options"] == {"include_usage": True}
    assert bodies[3]["ignore_eos"] is True and bodies[3]["min_tokens"] == 3
    assert "ignore_eos" not in bodies[4] and "min_tokens" not in bodies[4]
    assert bodies[5]["messages"] == [{"role": "user", "content": "prompt number 2"}] and "prompt" not in bodies[5]


def refuse(*fields: str, status: int = 400):
    """A server that refuses the first of `fields` a request carries, naming it as OpenAI's API does."""
    def behaviour(api, body):
        for name in fields:
            if name in body:
                return JSONResponse({"error": {"message": f"Unrecognized request argument supplied: {name}"}},
                                    status_code=status)
        return None
    return behaviour


def test_refused_optional_fields_are_retried_without_them_then_dropped_for_later_requests():
    app, seen = recording_app(refuse("ignore_eos", "stream_options", status=400))
    with serving(app) as url, Driver(EndpointSettings(url=url, model="m")) as driver:
        driver.submit(request(0))
        first = driver.wait()[0]
        driver.submit(request(1), request(2))
        later = driver.wait()
        described = driver.client.describe()
    posted = [body for api, _, body in seen if api == "completions"]
    assert len(posted) == 3 + 2           # the first: refused twice, then served; the later ones: sent once each
    assert first.error is None and first.info["retried_without"] == ["ignore_eos", "stream_options"]
    assert all(c.error is None and "retried_without" not in c.info for c in later.values() if c is not first)
    assert all("ignore_eos" not in body and "stream_options" not in body for body in posted[3:])
    assert all(body["min_tokens"] == 6 for body in posted[3:])
    dropped = described["optional_fields"]["dropped"]
    assert set(dropped) == {"ignore_eos", "stream_options"} and "HTTP 400" in dropped["ignore_eos"]
    assert described["optional_fields"]["sent"] == ["min_tokens"]
    assert described["output_lengths"] == "as asked, with min_tokens"


def test_refusal_that_names_no_optional_field_fails_the_request_and_drops_nothing():
    def too_long(api, body):
        return JSONResponse({"error": {"message": "prompt is longer than the context"}}, status_code=400)

    app, seen = recording_app(too_long)
    with serving(app) as url, Driver(EndpointSettings(url=url, model="m")) as driver:
        driver.submit(request(0))
        (completion,) = driver.wait().values()
        described = driver.client.describe()
    assert completion.error.startswith("HTTP 400") and "longer than the context" in completion.error
    assert described["optional_fields"]["dropped"] == {}
    assert len([api for api, _, _ in seen if api == "completions"]) == 2   # one retry without every optional field


def test_lengths_not_enforced_are_said_so_and_short_outputs_counted():
    app, _ = recording_app(lambda api, body: respond({**body, "max_tokens": 2}, api))   # stops early, as at EOS
    with serving(app) as url, Driver(EndpointSettings(url=url, model="m", optional_fields=["stream_options"])) as d:
        d.submit(request(0, output_tokens=6), request(1, output_tokens=6))
        completions = d.wait()
        described = d.client.describe()
    assert [c.output_tokens for c in completions.values()] == [2, 2]
    assert described["output_lengths"].startswith("as the server produced them")
    assert described["token_counts"]["short"] == 2


def test_api_key_is_sent_as_bearer_and_written_nowhere(monkeypatch, caplog):
    monkeypatch.setenv("BENCH_TEST_API_KEY", SECRET)

    def echo_key_on_failure(api, body):
        if body["prompt"].endswith("1") or "ignore_eos" in body:    # errors and refusals that quote the header
            return JSONResponse({"error": f"bad request from {SECRET}"}, status_code=400 if "ignore_eos" in body
                                else 500)
        return None

    app, seen = recording_app(echo_key_on_failure)
    caplog.set_level(logging.DEBUG)
    with serving(app) as url:
        settings = EndpointSettings(url=url, model="m", api_key_env="BENCH_TEST_API_KEY", headers={"X-Route": "a"})
        with Driver(settings) as driver:
            driver.submit(request(0))
            driver.wait()
            driver.submit(request(1))
            completions = driver.wait()
            described = driver.client.describe()
    assert {headers["authorization"] for _, headers, _ in seen} == {f"Bearer {SECRET}"}    # /v1/models too
    assert all(headers["x-route"] == "a" for _, headers, _ in seen)
    assert completions[0].error is None and completions[1].error.startswith("HTTP 500")
    assert described["optional_fields"]["dropped"]          # the refusal quoting the key was recorded
    written = json.dumps(described) + repr(completions) + caplog.text
    assert SECRET not in written and "[api key]" in written
    assert described["headers"] == ["X-Route"] and described["api_key_env"] == "BENCH_TEST_API_KEY"


def test_missing_api_key_variable_is_a_config_error(monkeypatch):
    monkeypatch.delenv("BENCH_TEST_API_KEY", raising=False)
    client = EndpointClient(EndpointSettings(url="http://127.0.0.1:1", model="m", api_key_env="BENCH_TEST_API_KEY"),
                            words)
    with pytest.raises(ConfigError, match="BENCH_TEST_API_KEY is not set"):
        client.start()


def test_server_errors_complete_with_errors_once_each():
    def fail_odd(api, body):
        return Response("overloaded", status_code=500) if int(body["prompt"].split()[-1]) % 2 else None

    app, _ = recording_app(fail_odd)
    with serving(app) as url, Driver(EndpointSettings(url=url, model="m")) as driver:
        driver.submit(*(request(i) for i in range(6)))
        completions = driver.wait()
    assert [c.error is None for c in completions.values()] == [True, False] * 3
    assert all(c.error == "HTTP 500: overloaded" and c.output_tokens == 0
               for i, c in completions.items() if i % 2)


def sse(*events: str, status: int = 200) -> StreamingResponse:
    async def body():
        for event in events:
            yield event.encode()
    return StreamingResponse(body(), status_code=status, media_type="text/event-stream")


CHUNK = 'data: {"choices": [{"index": 0, "text": " tok"}]}\n\n'


@pytest.mark.parametrize("events, error", [
    ((CHUNK, "data: {not json\n\n", "data: [DONE]\n\n"), "malformed answer: chunk '{not json'"),
    ((CHUNK, 'data: {"choices": 3}\n\n', "data: [DONE]\n\n"), "malformed answer"),
    ((CHUNK, CHUNK), "malformed answer: the stream ended before data: [DONE] and before a finish_reason"),
    ((CHUNK, 'data: {"error": {"message": "engine died"}}\n\n'), "server error in the stream: {'message': 'engine"),
])
def test_malformed_streams_complete_with_errors(events, error):
    app, _ = recording_app(lambda api, body: sse(*events))
    with serving(app) as url, Driver(EndpointSettings(url=url, model="m")) as driver:
        driver.submit(request(0))
        (completion,) = driver.wait().values()
    assert completion.error.startswith(error) and completion.output_tokens == 0
    assert len(driver.traces[0].tokens) == events.count(CHUNK)     # chunks before the fault were still events


def test_stream_that_finishes_without_done_completes_as_transformers_serve_ends_it():
    finished = 'data: {"choices": [{"index": 0, "text": "", "finish_reason": "length"}]}\n\n'
    usage = 'data: {"choices": [], "usage": {"completion_tokens": 2, "prompt_tokens": 3}}'   # no blank line at the end
    app, _ = recording_app(lambda api, body: sse(CHUNK, CHUNK, finished, usage))
    with serving(app) as url, Driver(EndpointSettings(url=url, model="m")) as driver:
        driver.submit(request(0, output_tokens=2))
        (completion,) = driver.wait().values()
        described = driver.client.describe()
    assert completion.error is None and completion.output_tokens == 2 and completion.info["usage_tokens"] == 2
    assert completion.info["finish_reason"] == "length" and len(driver.traces[0].tokens) == 2
    assert described["token_counts"]["ended_without_done"] == 1


def test_sse_comments_other_fields_and_multiline_data_are_parsed():
    events = (": keep-alive\n\n", "event: message\nid: 1\n", 'data: {"choices": [{"index": 0,\n',
              'data: "text": " one two"}]}\n\n', "data:[DONE]\n\n")
    app, _ = recording_app(lambda api, body: sse(*events))
    with serving(app) as url, Driver(EndpointSettings(url=url, model="m")) as driver:
        driver.submit(request(0))
        (completion,) = driver.wait().values()
    assert completion.error is None and completion.output_tokens == 2
    assert [n for _, n in driver.traces[0].tokens] == [2]


def test_connection_refused_completes_with_an_error():
    settings = EndpointSettings(url=f"http://127.0.0.1:{free_port()}", model="m", timeouts={"connect_s": 2})
    with Driver(settings) as driver:
        driver.submit(request(0), request(1))
        completions = driver.wait()
        described = driver.client.describe()
    assert all(c.error.startswith("ConnectError") for c in completions.values())
    assert described["server"]["version"] is None


def hanging_app():
    started = threading.Event()

    async def hang():
        yield CHUNK.encode()
        started.set()
        await asyncio.sleep(30)

    app, _ = recording_app(lambda api, body: StreamingResponse(hang(), media_type="text/event-stream"))
    return app, started


def test_stop_ends_requests_in_flight_with_errors():
    app, started = hanging_app()
    with serving(app) as url:
        driver = Driver(EndpointSettings(url=url, model="m"))
        with driver:
            driver.submit(request(0), request(1))
            assert started.wait(10)
        driver.client.stop()                          # idempotent
    errors = [trace.done[0][1].error for trace in driver.traces.values()]
    assert errors == ["stopped before the answer completed"] * 2


def test_request_timeout_completes_with_an_error():
    app, _ = hanging_app()
    settings = EndpointSettings(url="http://127.0.0.1:1", model="m", timeouts={"request_s": 0.5})
    with serving(app) as url:
        with Driver(settings.model_copy(update={"url": url})) as driver:
            driver.submit(request(0))
            (completion,) = driver.wait().values()
    assert completion.error == "no complete answer within request_s=0.5"


def test_stream_counter_reports_at_least_one_per_chunk_and_catches_up():
    counter = _StreamCounter(words)
    reports = [counter.add(piece) for piece in ["hel", "lo", " a b c", " d"]]
    assert reports == [1, 1, 2, 1]                 # "lo" adds no word but is an event; " a b c" catches up
    assert counter.reported == words("hello a b c d") == 5


def test_stream_counter_with_its_window_matches_a_full_recount():
    rng = random.Random(0)
    text = " ".join("".join(rng.choice("abcdefgh") for _ in range(rng.randint(1, 12))) for _ in range(400))
    cuts = sorted(rng.sample(range(1, len(text)), 300))
    counter = _StreamCounter(words)
    for start, end in zip([0, *cuts], [*cuts, len(text)]):
        counter.add(text[start:end])
    assert len(text) > 10 * WINDOW_CHARS and counter.estimated == words(text)


def test_settings_refuse_unknown_keys_v1_urls_and_client_fields_in_extra_body():
    with pytest.raises(ValidationError, match="extra_forbidden|Extra inputs"):
        EndpointSettings(url="http://h:1", model="m", api_key="sk-x")
    with pytest.raises(ValidationError, match="without /v1"):
        EndpointSettings(url="http://h:1/v1/", model="m")
    with pytest.raises(ValidationError, match="extra_body may not set max_tokens"):
        EndpointSettings(url="http://h:1", model="m", extra_body={"max_tokens": 3})
    with pytest.raises(ValueError, match="pass count_tokens"):
        EndpointClient(EndpointSettings(url="http://h:1", model="m"))


def test_client_cost_benchmark_runs_against_the_null_server(tmp_path):
    out = tmp_path / "cost.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "endpoint_client_cost.py"), "--rates", "20",
                          "--duration", "1", "--output-tokens", "4", "--json", str(out)],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    (step,) = json.loads(out.read_text())["steps"]
    assert step["rate"] == 20 and step["requests"] == step["completed"] == 20 and step["errors"] == 0
    assert step["cpu_s_per_request"] > 0


def test_streams_that_end_at_done_leave_no_pending_task_when_the_client_stops(null_server):
    """Defect: leaving the SSE loop at `[DONE]` left its line generator to the event loop's finalizer, whose close
    was still pending when stop() ended the loop: "Task was destroyed but it is pending!" once per stream."""
    import gc

    destroyed: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            destroyed.extend([record.getMessage()] if "destroyed" in record.getMessage() else [])

    handler = Catch()
    logging.getLogger("asyncio").addHandler(handler)
    try:
        for _ in range(5):
            with Driver(EndpointSettings(url=null_server.url, model="tiny")) as driver:
                driver.submit(*(request(i, output_tokens=3) for i in range(20)))
                errors = [c.error for c in driver.wait().values() if c.error is not None]
            del driver                      # the stopped client, its loop and what the loop still held
            gc.collect()
            assert errors == []
    finally:
        logging.getLogger("asyncio").removeHandler(handler)
    assert destroyed == []
