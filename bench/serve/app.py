"""The OpenAI-compatible app of `bench serve`: HTTP requests in, Requests to a ServingSystem (bench/serving) out.

    POST /v1/completions        text or token-id prompts (one or a list), streamed (SSE) or not
    POST /v1/chat/completions   messages through the tokenizer's chat template (joined where it has none)
    POST /v1/embeddings         an encoder's requests (output_tokens 0)
    GET  /v1/models, /health, /version, /metrics (Prometheus)

Prompts are tokenized without special tokens, as the harness's own workload builds them (bench/serving/workload.py),
so a request sent as text or as ids reaches the engine as the in-process scenarios' requests do. The system is the
one thing that decides timing: every request is submitted from the event loop's thread (SERVING.md: one submitting
thread) and its callbacks, timestamped when they fire, come back to the loop.

Output text. The ServingSystem interface reports how many tokens exist, not which: the text of n new tokens is n
copies of one token of the model's vocabulary that tokenizes back to exactly one token (`unit_text`), so a client
that counts tokens from text counts what the engine produced; where a system reports the ids
(`Completion.info["output_ids"]`), the whole answer's text is their decoding. Embeddings likewise return the vector
a system reports in `Completion.info["embedding"]`, else an empty one. `usage` is always the engine's own count.

Fields: `max_tokens`, `stream`, `stream_options.include_usage`, `ignore_eos` and `min_tokens` are honoured (a
request whose output may end at EOS before `min_tokens` is refused: the engines cannot stop at EOS after a minimum),
`temperature` 0, `n` 1 and `user` accepted; any other field is answered 400 naming it.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI
from fastapi import Request as HTTPRequest
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..serving.requests import Completion, Request, ServingSystem
from .metrics import CONTENT_TYPE, ServeMetrics

UNIT_CANDIDATES = (" the", " a", " and", " of", "the ", "a ", " tok")
DEFAULT_MAX_TOKENS = 16


@dataclass
class Served:
    """What the app serves: a system under test over a model, and what the model's requests need."""

    system: ServingSystem
    tokenizer: Any
    name: str
    task: str                           # "causal-lm" | "encoder"
    max_model_len: int | None = None    # prompt + output tokens at most
    describe: dict = field(default_factory=dict)   # what the system and model are (GET /v1/models shows it)


def unit_text(tokenizer: Any) -> str:
    """A short string of which k copies tokenize to exactly k tokens (k = 1..4), for text standing in for tokens."""
    for unit in UNIT_CANDIDATES:
        if all(len(tokenizer.encode(unit * k, add_special_tokens=False)) == k for k in (1, 2, 3, 4)):
            return unit
    return UNIT_CANDIDATES[-1]


# --- request bodies ------------------------------------------------------------------------------------------

class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    user: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False


class Generation(Body):
    max_tokens: int | None = Field(None, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = False
    min_tokens: int = Field(0, ge=0)
    temperature: float | None = Field(None, ge=0, le=0, description="greedy decoding only")
    n: int = Field(1, ge=1, le=1)

    @model_validator(mode="after")
    def _minimum_reachable(self) -> Generation:
        limit = self.max_tokens or DEFAULT_MAX_TOKENS
        if self.min_tokens > limit:
            raise ValueError(f"min_tokens ({self.min_tokens}) exceeds max_tokens ({limit})")
        if 0 < self.min_tokens < limit and not self.ignore_eos:
            raise ValueError("min_tokens below max_tokens needs an engine that stops at EOS only after it; this "
                             "server's engines cannot: send ignore_eos, or min_tokens equal to max_tokens")
        return self

    @property
    def exact(self) -> bool:
        """The output is exactly max_tokens long: EOS ignored, or no earlier end allowed."""
        return self.ignore_eos or self.min_tokens >= (self.max_tokens or DEFAULT_MAX_TOKENS)


class CompletionBody(Generation):
    prompt: str | list[int] | list[str] | list[list[int]]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str
    name: str | None = None


class ChatBody(Generation):
    messages: list[Message] = Field(min_length=1)


class EmbeddingBody(Body):
    input: str | list[int] | list[str] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"


class Refused(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"message": self.message, "type": self.kind, "param": self.param,
                                       "code": None}}, status_code=self.status)


def parse(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            raise Refused(400, f"unknown field {where!r}: this server does not take it", where) from None
        raise Refused(400, f"{where}: {error['msg']}" if where else error["msg"], where or None) from None


# --- one request in flight ------------------------------------------------------------------------------------

class Flight:
    """One Request submitted to the system: its callbacks, moved onto the event loop, feed a queue and the metrics."""

    def __init__(self, loop: asyncio.AbstractEventLoop, metrics: ServeMetrics, api: str, prompt_tokens: int):
        self.loop, self.metrics, self.api = loop, metrics, api
        self.events: asyncio.Queue = asyncio.Queue()
        self.arrived = time.perf_counter()
        self.last_token: float | None = None
        self.tokens = 0
        metrics.started(prompt_tokens)

    def on_token(self, count: int) -> None:          # any thread of the system
        self.loop.call_soon_threadsafe(self._token, count, time.perf_counter())

    def on_done(self, completion: Completion) -> None:
        self.loop.call_soon_threadsafe(self._done, completion, time.perf_counter())

    def _token(self, count: int, at: float) -> None:
        histogram = self.metrics.ttft if self.last_token is None else self.metrics.itl
        histogram.observe(at - (self.arrived if self.last_token is None else self.last_token))
        self.last_token = at
        self.tokens += count
        self.events.put_nowait(("token", count))

    def _done(self, completion: Completion, at: float) -> None:
        self.metrics.finished(self.api, completion.error is None, completion.output_tokens, at - self.arrived)
        self.events.put_nowait(("done", completion))

    async def completion(self) -> Completion:
        while True:
            kind, value = await self.events.get()
            if kind == "done":
                return value


class App:
    def __init__(self, served: Served):
        self.served = served
        self.metrics = ServeMetrics(served.name)
        self.unit = unit_text(served.tokenizer) if served.task == "causal-lm" else ""
        self.vocab = len(served.tokenizer)
        self.indices = itertools.count()      # requests, in arrival order
        self.answers = itertools.count()      # response ids
        self.ready = False

    # --- prompts ---

    def ids_of(self, prompt: str | list[int], param: str) -> tuple[tuple[int, ...], str | None]:
        if isinstance(prompt, str):
            return tuple(self.served.tokenizer.encode(prompt, add_special_tokens=False)), prompt
        bad = [i for i in prompt if not 0 <= i < self.vocab]
        if bad:
            raise Refused(400, f"token id {bad[0]} is outside the vocabulary (0..{self.vocab - 1})", param)
        return tuple(prompt), None

    def chat_ids(self, messages: list[Message]) -> tuple[int, ...]:
        tokenizer = self.served.tokenizer
        if getattr(tokenizer, "chat_template", None):
            ids = tokenizer.apply_chat_template([m.model_dump(exclude_none=True) for m in messages],
                                                add_generation_prompt=True, tokenize=True)
            return tuple(ids["input_ids"] if isinstance(ids, dict) else ids)
        return tuple(tokenizer.encode("\n".join(m.content for m in messages), add_special_tokens=False))

    def check_fits(self, ids: tuple[int, ...], output_tokens: int) -> None:
        if not ids:
            raise Refused(400, "the prompt is empty", "prompt")
        limit = self.served.max_model_len
        if limit is not None and len(ids) + output_tokens > limit:
            raise Refused(400, f"the prompt's {len(ids)} tokens and max_tokens {output_tokens} exceed the model's "
                               f"{limit} positions", "max_tokens")

    def check_model(self, body: Body, api: str) -> None:
        if body.model != self.served.name:
            raise Refused(404, f"the model {body.model!r} does not exist; this server serves {self.served.name!r}",
                          "model", "model_not_found")
        wanted = "encoder" if api == "embeddings" else "causal-lm"
        if self.served.task != wanted:
            raise Refused(400, f"{self.served.name!r} is a {self.served.task} model; the {api} API needs a "
                               f"{wanted} model", "model")

    # --- submission ---

    def submit(self, ids: tuple[int, ...], text: str | None, output_tokens: int, ignore_eos: bool,
               api: str) -> Flight:
        flight = Flight(asyncio.get_running_loop(), self.metrics, api, len(ids))
        request = Request(index=next(self.indices), prompt_ids=ids, output_tokens=output_tokens,
                          ignore_eos=ignore_eos, prompt_text=text)
        self.served.system.submit(request, flight.on_token, flight.on_done)
        return flight

    def text(self, completion: Completion | None, tokens: int) -> str:
        ids = completion.info.get("output_ids") if completion is not None else None
        if ids is not None:
            return self.served.tokenizer.decode(list(ids))
        return self.unit * tokens


def each_prompt(prompt: str | list) -> list[str | list[int]]:
    """A body's prompts: one text or one list of ids, or a list of either."""
    return prompt if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int) else [prompt]


def _usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _event(payload: dict | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def _finish_reason(completion: Completion, asked: int) -> str:
    return "length" if completion.output_tokens >= asked else "stop"


def server_error(completion: Completion) -> Refused:
    return Refused(500, f"the engine failed the request: {completion.error}", kind="server_error")


def create_app(served: Served) -> FastAPI:
    """The app over `served.system`, which it starts when the server starts and stops when it stops."""
    state = App(served)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.to_thread(served.system.start)
        state.ready = True
        try:
            yield
        finally:
            state.ready = False
            await asyncio.to_thread(served.system.stop)

    app = FastAPI(title="bench serve", lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    async def body_of(http: HTTPRequest) -> Any:
        try:
            return await http.json()
        except ValueError:
            raise Refused(400, "the body is not JSON") from None

    @app.exception_handler(Refused)
    async def refused(http: HTTPRequest, exc: Refused) -> JSONResponse:
        return exc.response()

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200 if state.ready else 503)

    @app.get("/version")
    async def version() -> dict:
        from .. import __version__

        return {"version": f"bench serve {__version__}"}

    @app.get("/v1/models")
    async def models() -> dict:
        described = {**served.describe, "system": served.system.describe()}
        return {"object": "list", "data": [{"id": served.name, "object": "model", "created": 0, "owned_by": "bench",
                                            "max_model_len": served.max_model_len, "bench": described}]}

    @app.get("/metrics")
    async def metrics() -> Response:
        return PlainTextResponse(state.metrics.render(), media_type=CONTENT_TYPE)

    @app.post("/v1/completions")
    async def completions(http: HTTPRequest) -> Response:
        body = parse(CompletionBody, await body_of(http))
        state.check_model(body, "completions")
        return await generate(body, [state.ids_of(p, "prompt") for p in each_prompt(body.prompt)], "completions")

    @app.post("/v1/chat/completions")
    async def chat(http: HTTPRequest) -> Response:
        body = parse(ChatBody, await body_of(http))
        state.check_model(body, "chat")
        return await generate(body, [(state.chat_ids(body.messages), None)], "chat")

    async def generate(body: Generation, prompts: list[tuple[tuple[int, ...], str | None]], api: str) -> Response:
        asked = body.max_tokens or DEFAULT_MAX_TOKENS
        for ids, _ in prompts:
            state.check_fits(ids, asked)
        flights = [state.submit(ids, text, asked, body.exact, api) for ids, text in prompts]
        prompt_tokens = sum(len(ids) for ids, _ in prompts)
        head = {"id": f"{'chatcmpl' if api == 'chat' else 'cmpl'}-{next(state.answers)}", "created": int(time.time()),
                "model": served.name}
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(stream(flights, head, api, asked, prompt_tokens, include_usage),
                                     media_type="text/event-stream")
        done = await asyncio.gather(*(flight.completion() for flight in flights))
        failed = next((c for c in done if c.error is not None), None)
        if failed is not None:
            raise server_error(failed)
        if api == "chat":
            message = {"role": "assistant", "content": state.text(done[0], done[0].output_tokens)}
            choices = [{"index": 0, "message": message, "logprobs": None,
                        "finish_reason": _finish_reason(done[0], asked)}]
        else:
            choices = [{"index": i, "text": state.text(c, c.output_tokens), "logprobs": None,
                        "finish_reason": _finish_reason(c, asked)} for i, c in enumerate(done)]
        return JSONResponse({**head, "object": "chat.completion" if api == "chat" else "text_completion",
                             "choices": choices, "usage": _usage(prompt_tokens, sum(c.output_tokens for c in done))})

    async def stream(flights: list[Flight], head: dict, api: str, asked: int, prompt_tokens: int,
                     include_usage: bool) -> AsyncIterator[bytes]:
        """Each choice's token events as chunks in arrival order, then each choice's finish, usage and [DONE]."""
        kind = "chat.completion.chunk" if api == "chat" else "text_completion"

        def chunk(index: int, text: str | None, finish: str | None = None) -> bytes:
            if api == "chat":
                delta = {} if text is None else {"content": text}
                choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            else:
                choice = {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}
            return _event({**head, "object": kind, "choices": [choice]})

        if api == "chat":
            role = {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
            yield _event({**head, "object": kind, "choices": [role]})
        merged: asyncio.Queue = asyncio.Queue()

        async def forward(index: int, flight: Flight) -> None:
            while True:
                event = await flight.events.get()
                await merged.put((index, *event))
                if event[0] == "done":
                    return

        forwarders = [asyncio.create_task(forward(i, f)) for i, f in enumerate(flights)]
        completions: dict[int, Completion] = {}
        try:
            while len(completions) < len(flights):
                index, what, value = await merged.get()
                if what == "token":
                    yield chunk(index, state.unit * value)
                    continue
                completions[index] = value
                if value.error is not None:
                    yield _event({"error": {"message": f"the engine failed the request: {value.error}",
                                            "type": "server_error"}})
                    return
                yield chunk(index, None, _finish_reason(value, asked))
            if include_usage:
                output = sum(c.output_tokens for c in completions.values())
                yield _event({**head, "object": kind, "choices": [], "usage": _usage(prompt_tokens, output)})
            yield _event("[DONE]")
        finally:
            for task in forwarders:
                task.cancel()

    @app.post("/v1/embeddings")
    async def embed(http: HTTPRequest) -> Response:
        body = parse(EmbeddingBody, await body_of(http))
        state.check_model(body, "embeddings")
        prompts = [state.ids_of(i, "input") for i in each_prompt(body.input)]
        for ids, _ in prompts:
            state.check_fits(ids, 0)
        done = await asyncio.gather(*(state.submit(ids, text, 0, True, "embeddings").completion()
                                      for ids, text in prompts))
        failed = next((c for c in done if c.error is not None), None)
        if failed is not None:
            raise server_error(failed)
        data = []
        for i, completion in enumerate(done):
            vector = [float(x) for x in completion.info.get("embedding") or ()]
            if body.encoding_format == "base64":
                vector = base64.b64encode(np.asarray(vector, dtype=np.float32).tobytes()).decode()
            data.append({"object": "embedding", "index": i, "embedding": vector})
        tokens = sum(len(ids) for ids, _ in prompts)
        return JSONResponse({"object": "list", "model": served.name, "data": data,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    return app
