"""An OpenAI-compatible HTTP endpoint as a system under test (SERVING.md's ServingSystem).

One asyncio event loop in one background thread of this process holds an httpx.AsyncClient; `submit` hands each
request to that loop (call_soon_threadsafe) and returns at once. Completions and chat stream over SSE: every chunk
with text calls on_token as it is parsed, so the caller's callback timestamps it; on_done follows exactly once per
request, with an error for a non-2xx answer, a connection failure, a timeout or a malformed stream.

Token counts. The server's usage count (asked for with `stream_options.include_usage`) is the output length where
it is sent; otherwise the client's tokenizer counts the whole text once at the end. Streaming needs a count per
chunk before the chunk's tokens are all known, and on_token must say >= 1 (the chunk's arrival is an event the
latency metrics need, even where its text only extends a token already counted), so each chunk reports
max(1, estimated tokens so far - tokens reported so far): the estimate grows by count(tail + chunk) - count(tail),
tail being the last WINDOW_CHARS characters of the text before the chunk. Tokens merge only across a chunk's
boundary, so this equals recounting the whole text (quadratic in its length, and paid on the loop thread between
the chunk's arrival and its timestamp) except for one word longer than the window. Reports run ahead of the true
count only where a chunk added no token, and catch up when a later chunk adds more than one. Completion.info holds
usage_tokens, tokenizer_tokens and streamed_tokens (the sum passed to on_token) side by side.

Fields not every server takes (`stream_options`, `ignore_eos`, `min_tokens`): a 400 or 422 answer to a request
that carried some is retried without the ones the answer names (all of them where it names none), so once per
field at most; when a retry succeeds, those fields are dropped for every later request and describe() says which
and why. Where ignore_eos and min_tokens are not sent, output lengths are what the server chose (describe() says
so, and counts the requests that came back shorter than asked).

The API key is read from the environment variable named by `api_key_env` and sent as a Bearer header; it is
written nowhere: not in describe(), an error, a log line or a Completion.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import ConfigError
from ..serving.requests import Completion, OnDone, OnToken, Request
from .identity import server_identity

log = logging.getLogger(__name__)

OptionalField = Literal["stream_options", "ignore_eos", "min_tokens"]
OPTIONAL_FIELDS: tuple[OptionalField, ...] = ("stream_options", "ignore_eos", "min_tokens")
REFUSAL_STATUSES = (400, 422)       # what servers answer to a body field they do not take
PATHS = {"completions": "/v1/completions", "chat": "/v1/chat/completions", "embeddings": "/v1/embeddings"}
CLIENT_KEYS = {"model", "prompt", "messages", "input", "max_tokens", "stream", *OPTIONAL_FIELDS}
WINDOW_CHARS = 64
EXCERPT_CHARS = 300


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Timeouts(Strict):
    connect_s: float = Field(10.0, gt=0, description="to open a connection")
    read_s: float | None = Field(600.0, gt=0, description="longest wait for the next bytes of an answer")
    request_s: float | None = Field(None, gt=0, description="whole request, from submission to its last byte")


class EndpointSettings(Strict):
    """An OpenAI-compatible server to benchmark."""

    url: str = Field(description="base URL, without /v1: http://127.0.0.1:8000")
    model: str = Field(description="the served model name, sent as `model`")
    api: Literal["completions", "chat", "embeddings"] = "completions"
    prompt: Literal["text", "ids"] = Field("text", description="completions and embeddings: send the prompt's text, "
                                                                "or its token ids (not every server takes them)")
    headers: dict[str, str] = Field(default_factory=dict, description="sent with every request; names recorded only")
    api_key_env: str | None = Field(None, description="the NAME of the environment variable holding the API key")
    optional_fields: list[OptionalField] = Field(default_factory=lambda: list(OPTIONAL_FIELDS),
                                                 description="fields to send that not every server takes")
    extra_body: dict[str, Any] = Field(default_factory=dict, description="more fields for every request body")
    timeouts: Timeouts = Field(default_factory=Timeouts)
    max_connections: int | None = Field(None, ge=1, description="open connections at most (None: one per request "
                                                                "in flight); requests beyond it wait in the client")

    @field_validator("url")
    @classmethod
    def _base_url(cls, url: str) -> str:
        return base_url(url)

    @model_validator(mode="after")
    def _extra_body_leaves_client_fields(self) -> EndpointSettings:
        taken = sorted(CLIENT_KEYS & set(self.extra_body))
        if taken:
            raise ValueError(f"extra_body may not set {', '.join(taken)}: the client sets them")
        return self


def base_url(url: str) -> str:
    """A server's base URL as the client takes it: http(s), no trailing slash, no /v1."""
    url = url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError("the URL must start with http:// or https://")
    if url.endswith("/v1"):
        raise ValueError("give the base URL without /v1: the client adds /v1/... itself")
    return url


def token_counter(tokenizer) -> Callable[[str], int]:
    """A Hugging Face tokenizer as the client's counter: tokens of a text, without special tokens (a BOS would be
    counted once per text, not once per output)."""
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False))


class _Failed(Exception):
    """A request that cannot complete; the message is its Completion's error."""


class _Call:
    """One submitted request and its callbacks; `finish` calls on_done once, whatever calls it again."""

    __slots__ = ("request", "on_token", "on_done", "finished")

    def __init__(self, request: Request, on_token: OnToken, on_done: OnDone):
        self.request, self.on_token, self.on_done, self.finished = request, on_token, on_done, False

    def finish(self, completion: Completion) -> None:
        if not self.finished:
            self.finished = True
            self.on_done(completion)


class _StreamCounter:
    """Tokens to report per streamed chunk (see the module docstring): >= 1 per chunk with text."""

    __slots__ = ("count", "tail", "estimated", "reported", "chunks")

    def __init__(self, count: Callable[[str], int]):
        self.count, self.tail, self.estimated, self.reported, self.chunks = count, "", 0, 0, 0

    def add(self, piece: str) -> int:
        self.chunks += 1
        joined = self.tail + piece
        self.estimated += max(0, self.count(joined) - (self.count(self.tail) if self.tail else 0))
        self.tail = joined[-WINDOW_CHARS:]
        new = max(1, self.estimated - self.reported)
        self.reported += new
        return new


class EndpointClient:
    """The ServingSystem for an OpenAI-compatible HTTP endpoint. `count_tokens` (text -> tokens, without special
    tokens; see `token_counter`) is required for completions and chat."""

    engine = "endpoint"

    def __init__(self, settings: EndpointSettings, count_tokens: Callable[[str], int] | None = None):
        if settings.api != "embeddings" and count_tokens is None:
            raise ValueError(f"the {settings.api} API streams text: pass count_tokens (see token_counter)")
        self.settings = settings
        self.max_in_flight = settings.max_connections
        self._count_tokens = count_tokens
        self._fields = [name for name in OPTIONAL_FIELDS if name in settings.optional_fields]
        self._dropped: dict[str, str] = {}
        self._tally = {"compared": 0, "disagree": 0, "largest_difference": 0, "without_usage": 0, "short": 0,
                       "ended_without_done": 0}
        self._secret: str | None = None
        self._server: dict | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task] = set()

    # --- ServingSystem -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Ask the server what it is (before any clock starts), then open the loop and its connection pool."""
        if self._thread is not None:
            raise RuntimeError("the endpoint client is already started")
        headers = dict(self.settings.headers)
        if self.settings.api_key_env:
            key = os.environ.get(self.settings.api_key_env)
            if not key:
                raise ConfigError("(endpoint settings)", "api_key_env",
                                  f"the environment variable {self.settings.api_key_env} is not set",
                                  "export it, or remove api_key_env for a server without a key")
            self._secret = key
            headers["Authorization"] = f"Bearer {key}"
        timeouts = self.settings.timeouts
        self._server = server_identity(self.settings.url, headers, timeouts.connect_s)
        limits = httpx.Limits(max_connections=self.settings.max_connections,
                              max_keepalive_connections=self.settings.max_connections, keepalive_expiry=30.0)
        # pool=None: a request waiting for a connection (max_connections) is queueing, bounded by request_s
        timeout = httpx.Timeout(connect=timeouts.connect_s, read=timeouts.read_s, write=timeouts.connect_s, pool=None)
        self._client = httpx.AsyncClient(base_url=self.settings.url, headers=headers, timeout=timeout, limits=limits,
                                         trust_env=False)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="endpoint-client", daemon=True)
        self._thread.start()

    def submit(self, request: Request, on_token: OnToken, on_done: OnDone) -> None:
        if self._loop is None:
            raise RuntimeError("submit before start() or after stop()")
        self._loop.call_soon_threadsafe(self._begin, _Call(request, on_token, on_done))

    def stop(self) -> None:
        """Cancel what is still in flight (each gets on_done with an error), close the pool, end the thread."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result()
        asyncio.run_coroutine_threadsafe(loop.shutdown_asyncgens(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join()
        loop.close()

    def describe(self) -> dict:
        described = {
            "implementation": f"OpenAI-compatible HTTP client (httpx {httpx.__version__})",
            "url": self.settings.url, "model": self.settings.model, "api": self.settings.api,
            "prompt": self.settings.prompt,
            "headers": sorted(self.settings.headers),  # names only: a value may be a credential
            "api_key_env": self.settings.api_key_env,
            "extra_body": self.settings.extra_body,
            "timeouts": self.settings.timeouts.model_dump(), "max_connections": self.settings.max_connections,
            "server": self._server,
        }
        if self.settings.api == "embeddings":
            return described
        sent = [name for name in self._fields if name not in self._dropped]
        enforced = [name for name in ("ignore_eos", "min_tokens") if name in sent]
        if enforced:
            lengths = f"as asked, with {' and '.join(enforced)}"
        else:
            lengths = "as the server produced them: neither ignore_eos nor min_tokens is sent, so EOS may end them"
        return {**described, "optional_fields": {"sent": sent, "dropped": dict(self._dropped)},
                "output_lengths": lengths, "token_counts": dict(self._tally)}

    # --- on the loop thread --------------------------------------------------------------------------------

    def _begin(self, call: _Call) -> None:
        task = self._loop.create_task(self._serve(call))
        self._tasks.add(task)
        task.add_done_callback(lambda finished: self._settle(finished, call))

    def _settle(self, task: asyncio.Task, call: _Call) -> None:
        """Whatever ended the task (cancelled by stop, a bug, a raising callback), on_done has been called once."""
        self._tasks.discard(task)
        if task.cancelled():
            call.finish(Completion(output_tokens=0, error="stopped before the answer completed"))
        elif task.exception() is not None:
            exc = task.exception()
            log.error("endpoint request %d failed in the client: %s", call.request.index, self._redact(repr(exc)))
            call.finish(Completion(output_tokens=0, error=self._redact(f"client error: {type(exc).__name__}: {exc}")))

    async def _shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()

    async def _serve(self, call: _Call) -> None:
        try:
            work = self._embed(call) if self.settings.api == "embeddings" else self._generate(call)
            completion = await asyncio.wait_for(work, self.settings.timeouts.request_s)
        except asyncio.TimeoutError:
            completion = self._failed(f"no complete answer within request_s={self.settings.timeouts.request_s}")
        except httpx.HTTPError as exc:
            completion = self._failed(f"{type(exc).__name__}: {exc}")
        except _Failed as exc:
            completion = self._failed(str(exc))
        call.finish(completion)

    def _failed(self, error: str) -> Completion:
        return Completion(output_tokens=0, error=self._redact(error))

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "[api key]") if self._secret else text

    def _prompt(self, request: Request):
        if self.settings.prompt == "ids" and self.settings.api != "chat":
            return list(request.prompt_ids)
        if request.prompt_text is None:
            raise _Failed(f"request {request.index} has no prompt_text to send (or set prompt: ids)")
        return request.prompt_text

    def _body(self, request: Request, fields: list[str]) -> dict:
        body = {**self.settings.extra_body, "model": self.settings.model, "max_tokens": request.output_tokens,
                "stream": True}
        if self.settings.api == "chat":
            body["messages"] = [{"role": "user", "content": self._prompt(request)}]
        else:
            body["prompt"] = self._prompt(request)
        if "stream_options" in fields:
            body["stream_options"] = {"include_usage": True}
        if request.ignore_eos and "ignore_eos" in fields:
            body["ignore_eos"] = True
        if request.ignore_eos and "min_tokens" in fields:
            body["min_tokens"] = request.output_tokens
        return body

    async def _generate(self, call: _Call) -> Completion:
        fields = [name for name in self._fields if name not in self._dropped]
        refusals: dict[str, str] = {}   # optional field -> the answer that refused a request carrying it
        while True:     # at most once per optional field: each retry sends fewer
            async with self._client.stream("POST", PATHS[self.settings.api],
                                           json=self._body(call.request, fields)) as response:
                if not response.is_success:
                    answer = f"HTTP {response.status_code}: " + (await response.aread()).decode(
                        "utf-8", errors="replace")[:EXCERPT_CHARS]
                    refused = self._refused(response.status_code, answer, fields)
                    if not refused:
                        return self._failed(answer)
                    refusals.update(dict.fromkeys(refused, answer))
                    fields = [name for name in fields if name not in refused]
                    continue
                self._drop(refusals)
                completion = await self._read_stream(response, call)
                if refusals:
                    completion.info["retried_without"] = list(refusals)
                return completion

    @staticmethod
    def _refused(status: int, answer: str, fields: list[str]) -> list[str]:
        """The optional fields a refusal may be about: those its text names, else all that were sent."""
        if status not in REFUSAL_STATUSES or not fields:
            return []
        return [name for name in fields if name in answer] or fields

    def _drop(self, refusals: dict[str, str]) -> None:
        """Fields whose request succeeded once sent without them: later requests go without them too."""
        for name, answer in refusals.items():
            if name not in self._dropped:
                self._dropped[name] = self._redact(f"refused ({answer}); the request succeeded without it")
                log.warning("the endpoint refused %s; later requests go without it", name)

    async def _read_stream(self, response: httpx.Response, call: _Call) -> Completion:
        counter = _StreamCounter(self._count_tokens)
        pieces: list[str] = []
        usage: dict = {}
        finish_reason = None
        data: list[str] = []
        done = False
        # closed here, not by the loop's finalizer after `break` (a pending close when the loop ends is a warning)
        async with contextlib.aclosing(_with_final_blank(response.aiter_lines())) as lines:
            async for line in lines:
                if line.startswith("data:"):
                    data.append(line[6:] if line.startswith("data: ") else line[5:])
                    continue
                if line or not data:        # another SSE field, a comment, or a blank line with no event
                    continue
                event, data = "\n".join(data), []
                if event == "[DONE]":
                    done = True
                    break
                piece, reason, event_usage = _parse_chunk(event, self.settings.api)
                usage = event_usage or usage
                finish_reason = reason or finish_reason
                if piece:
                    pieces.append(piece)
                    call.on_token(counter.add(piece))
        if not done:
            # a whole answer (httpx raises on a cut one) whose last choice said why it finished, without the
            # closing [DONE] some servers leave out (transformers serve): complete, and counted
            if finish_reason is None:
                raise _Failed("malformed answer: the stream ended before data: [DONE] and before a finish_reason")
            self._tally["ended_without_done"] += 1
        return self._completed(call.request, "".join(pieces), usage, counter, finish_reason)

    def _completed(self, request: Request, text: str, usage: dict, counter: _StreamCounter,
                   finish_reason: str | None) -> Completion:
        tokenizer_tokens = self._count_tokens(text) if text else 0
        usage_tokens = usage.get("completion_tokens")
        if isinstance(usage_tokens, int):
            difference = abs(usage_tokens - tokenizer_tokens)
            self._tally["compared"] += 1
            self._tally["disagree"] += difference > 0
            self._tally["largest_difference"] = max(self._tally["largest_difference"], difference)
        else:
            usage_tokens = None
            self._tally["without_usage"] += 1
        output_tokens = tokenizer_tokens if usage_tokens is None else usage_tokens
        self._tally["short"] += output_tokens < request.output_tokens
        return Completion(output_tokens=output_tokens, info={
            "usage_tokens": usage_tokens, "tokenizer_tokens": tokenizer_tokens, "streamed_tokens": counter.reported,
            "chunks": counter.chunks, "finish_reason": finish_reason,
            "usage_prompt_tokens": usage.get("prompt_tokens")})

    async def _embed(self, call: _Call) -> Completion:
        body = {**self.settings.extra_body, "model": self.settings.model, "input": self._prompt(call.request)}
        response = await self._client.post(PATHS["embeddings"], json=body)
        if not response.is_success:
            return self._failed(f"HTTP {response.status_code}: {response.text[:EXCERPT_CHARS]}")
        try:
            answer = response.json()
            vectors = answer["data"]
            usage = answer.get("usage") or {}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise _Failed(f"malformed answer: {type(exc).__name__} in {response.text[:EXCERPT_CHARS]!r}") from None
        if not isinstance(vectors, list) or not vectors:
            raise _Failed(f"malformed answer: no embedding in {response.text[:EXCERPT_CHARS]!r}")
        return Completion(output_tokens=0, info={"usage_prompt_tokens": usage.get("prompt_tokens")})


async def _with_final_blank(lines):
    """The stream's lines, then one blank line: an event the server did not end with a blank line still counts."""
    async for line in lines:
        yield line
    yield ""


def _parse_chunk(event: str, api: str) -> tuple[str, str | None, dict | None]:
    """(text, finish reason, usage) of one streamed chunk; raises on what the API does not describe."""
    try:
        chunk = json.loads(event)
    except ValueError:
        chunk = None
    if not isinstance(chunk, dict):
        raise _Failed(f"malformed answer: chunk {event[:EXCERPT_CHARS]!r} is not a JSON object")
    if "error" in chunk:
        raise _Failed(f"server error in the stream: {str(chunk['error'])[:EXCERPT_CHARS]}")
    usage = chunk.get("usage")
    piece, reason = "", None
    try:
        for choice in chunk.get("choices") or ():
            if api == "chat":
                delta = choice.get("delta") or {}
                piece += (delta.get("reasoning_content") or "") + (delta.get("content") or "")
            else:
                piece += choice.get("text") or ""
            reason = choice.get("finish_reason") or reason
    except (TypeError, AttributeError):
        raise _Failed(f"malformed answer: chunk {event[:EXCERPT_CHARS]!r}") from None
    if usage is not None and not isinstance(usage, dict):
        raise _Failed(f"malformed answer: usage in chunk {event[:EXCERPT_CHARS]!r}")
    return piece, reason, usage
