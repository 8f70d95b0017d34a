"""An OpenAI-compatible server that answers at once, so a client's own cost can be measured against it.

Completions and chat stream `max_tokens` chunks of one word (" tok") each, with no delay, then the usage chunk
when `stream_options.include_usage` asks for it, then `[DONE]`; embeddings return a zero vector. Every route
the client touches exists: /health, /version, /v1/models, /v1/completions, /v1/chat/completions, /v1/embeddings.

    python -m bench.endpoints.nullserver --port 8000 [--host 127.0.0.1] [--model null]
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import AsyncIterator

from typing import TYPE_CHECKING

if TYPE_CHECKING:   # imported where used: the registries walk this package, and a plan needs no web framework
    from starlette.applications import Starlette
    from starlette.responses import Response

VERSION = "bench-nullserver 1"
TOKEN = " tok"                 # one token per chunk for any word-counting tokenizer
EMBEDDING_DIM = 8
_ids = itertools.count()


def _event(payload: dict | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def _prompt_tokens(prompt) -> int:
    return len(prompt) if isinstance(prompt, list) else len(str(prompt).split())


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


async def _stream(chunk_template: dict, final: dict, usage: dict | None, count: int) -> AsyncIterator[bytes]:
    token_event = _event(chunk_template)   # every token chunk is the same: encode it once
    for _ in range(count):
        yield token_event
    yield _event(final)
    if usage is not None:
        yield _event({**chunk_template, "choices": [], "usage": usage})
    yield _event("[DONE]")


def respond(body: dict, api: str) -> Response:
    """The answer to one completions or chat request's JSON body (`api`: "completions" | "chat")."""
    count = int(body.get("max_tokens") or 16)
    model = body.get("model", "null")
    if api == "chat":
        prompt_tokens = sum(_prompt_tokens(m.get("content", "")) for m in body.get("messages", []))
        kind, choice = "chat.completion", {"index": 0, "delta": {"content": TOKEN}, "finish_reason": None}
        last = {"index": 0, "delta": {}, "finish_reason": "length"}
        whole = {"index": 0, "message": {"role": "assistant", "content": TOKEN * count}, "finish_reason": "length"}
    else:
        prompt_tokens = _prompt_tokens(body.get("prompt", ""))
        kind, choice = "text_completion", {"index": 0, "text": TOKEN, "finish_reason": None}
        last = {"index": 0, "text": "", "finish_reason": "length"}
        whole = {"index": 0, "text": TOKEN * count, "finish_reason": "length"}
    from starlette.responses import JSONResponse, StreamingResponse

    usage = _usage(prompt_tokens, count)
    head = {"id": f"null-{next(_ids)}", "object": kind, "created": 0, "model": model}
    if not body.get("stream"):
        return JSONResponse({**head, "choices": [whole], "usage": usage})
    wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    chunk = {**head, "object": kind + (".chunk" if api == "chat" else ""), "choices": [choice]}
    return StreamingResponse(_stream(chunk, {**chunk, "choices": [last]}, usage if wants_usage else None, count),
                             media_type="text/event-stream")


def embeddings(body: dict) -> Response:
    from starlette.responses import JSONResponse

    inputs = body.get("input", "")
    inputs = inputs if isinstance(inputs, list) and not all(isinstance(i, int) for i in inputs) else [inputs]
    data = [{"object": "embedding", "index": i, "embedding": [0.0] * EMBEDDING_DIM} for i in range(len(inputs))]
    tokens = sum(_prompt_tokens(i) for i in inputs)
    return JSONResponse({"object": "list", "model": body.get("model", "null"), "data": data,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def create_app(model: str = "null") -> Starlette:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def health(request) -> Response:
        return Response(status_code=200)

    async def version(request) -> Response:
        return JSONResponse({"version": VERSION})

    async def models(request) -> Response:
        return JSONResponse({"object": "list",
                             "data": [{"id": model, "object": "model", "created": 0, "owned_by": "bench"}]})

    async def completions(request) -> Response:
        return respond(await request.json(), "completions")

    async def chat(request) -> Response:
        return respond(await request.json(), "chat")

    async def embed(request) -> Response:
        return embeddings(await request.json())

    return Starlette(routes=[Route("/health", health), Route("/version", version), Route("/v1/models", models),
                             Route("/v1/completions", completions, methods=["POST"]),
                             Route("/v1/chat/completions", chat, methods=["POST"]),
                             Route("/v1/embeddings", embed, methods=["POST"])])


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--model", default="null", help="the served model name (default: null)")
    args = parser.parse_args(argv)
    uvicorn.run(create_app(args.model), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
